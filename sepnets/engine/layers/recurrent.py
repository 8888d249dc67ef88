"""Recurrent layers: LSTMUnit, and RNN and LSTM, which compute what the nets Caffe unrolls
for them compute (rnn_layer.cpp, lstm_layer.cpp FillUnrolledNet), in the same order.

Caffe semantics kept:
- bottoms x (T, N, ...), cont (T, N), an optional static input (N, ...), and with
  expose_hidden the initial hidden state(s) (1, N, num_output): h_0 (RNN), h_0 and c_0 (LSTM);
  tops the output (T, N, num_output) and with expose_hidden the final state(s) h_T (, c_T);
- cont_t multiplies the previous hidden state before it is used (0 starts a new sequence);
  no gradient reaches cont;
- without expose_hidden the final state of one forward pass is the initial state of the
  next (zeros at first), for TEST nets too: a sequence may span batches;
- with expose_hidden the initial states come from the bottoms and the final states go to
  the tops as values only: Caffe shares their data, not their diffs, so no gradient reaches
  the state bottoms and none comes from the state tops;
- blobs in the unrolled net's order: RNN W_xh, b_h, [W_xh_static], W_hh, W_ho, b_o; LSTM
  W_xc, b_c, [W_xc_static], W_hc; weights filled by weight_filler, biases by bias_filler;
- LSTM gates in the order i, f, o, g; LSTMUnit's gradient is Caffe's Backward (the forget
  gate's is written with f = cont * sigmoid, as Caffe does).
"""
import torch

from sepnets.caffe import glog
from sepnets.engine.layers.base import Layer, register


class _LSTMUnit(torch.autograd.Function):
    """lstm_unit_layer.cpp: i, f, o = sigmoid, g = tanh of the four gate blocks;
    f is 0 where cont is 0 and cont * sigmoid otherwise; c = f c_prev + i g; h = o tanh(c)."""

    @staticmethod
    def forward(ctx, previous, gates, cont):
        i, f, o, g = gates.chunk(4, dim=-1)
        i, o, g = torch.sigmoid(i), torch.sigmoid(o), torch.tanh(g)
        keep = cont.unsqueeze(-1)
        f = torch.where(keep == 0, torch.zeros_like(f), keep * torch.sigmoid(f))
        c = f * previous + i * g
        tanh_c = torch.tanh(c)
        ctx.save_for_backward(previous, i, f, o, g, tanh_c)
        return c, o * tanh_c

    @staticmethod
    def backward(ctx, dc, dh):
        previous, i, f, o, g, tanh_c = ctx.saved_tensors
        c_term = dc + dh * o * (1 - tanh_c * tanh_c)
        gates = torch.cat([c_term * g * i * (1 - i), c_term * previous * f * (1 - f),
                           dh * tanh_c * o * (1 - o), c_term * i * (1 - g * g)], dim=-1)
        return c_term * f, gates, None


@register
class LSTMUnit(Layer):
    """One LSTM step: bottoms c_prev (1, N, D), gates (1, N, 4D), cont (1, N); tops c, h."""
    TYPE = "LSTMUnit"
    NO_GRADIENT = (2,)

    def forward(self, bottoms):
        return list(_LSTMUnit.apply(*bottoms))


class Recurrent(Layer):
    PARAMS = ("recurrent_param",)
    FIELDS = {"recurrent_param": {"num_output", "weight_filler", "bias_filler", "debug_info",
                                  "expose_hidden"}}
    NO_GRADIENT = (1,)
    STATES = 1  # hidden state blobs carried from step to step

    def setup(self, shapes):
        p = self.param.recurrent_param
        if p.debug_info:
            glog.warning(None, f"layer '{self.name}': recurrent_param.debug_info is not "
                               "supported by the engine; ignored")
        steps, streams = self.bottom_shapes[0][:2]
        glog.info("recurrent_layer.cpp:20", f"Initializing recurrent layer: assuming input batch "
                                            f"contains {steps} timesteps of {streams} independent "
                                            "streams.")
        self.expose = p.expose_hidden
        self.static = len(self.param.bottom) > 2 + (self.STATES if self.expose else 0)
        for shape in shapes.param_shapes:
            filler, what = ((p.bias_filler, "bias_filler") if len(shape) == 1
                            else (p.weight_filler, "weight_filler"))
            self.blobs.append(self.make_blob(filler, shape, what))
        self.state = [self.zeros((1, streams, p.num_output)) for _ in range(self.STATES)]

    def forward(self, bottoms):
        x, cont = bottoms[0], bottoms[1]
        steps, streams = x.shape[:2]
        weights = [self.blob(i) for i in range(len(self.blobs))]
        w_x, b_x = weights[:2]
        static = None
        if self.static:
            w_static = weights[2]
            static = (bottoms[2].reshape(streams, -1) @ w_static.t()).reshape(1, streams, -1)
        recurrent = weights[2 + self.static:]
        inputs = x.reshape(steps, streams, -1) @ w_x.t() + b_x
        if self.expose:
            state = [b.detach() for b in bottoms[len(bottoms) - self.STATES:]]
        else:
            state = self.state
        outputs, state = self.unroll(inputs, cont, static, state, recurrent)
        if not self.expose:
            self.state = [s.detach() for s in state]
            return [outputs]
        return [outputs] + [s.detach() for s in state]

    def unroll(self, inputs, cont, static, state, weights):
        """(output over all steps, final state) from the per-step input transforms."""
        raise NotImplementedError


@register
class RNN(Recurrent):
    """h_t = tanh(W_hh (cont_t h_{t-1}) + W_xh x_t + b_h [+ W_xh_static x_static]);
    o_t = tanh(W_ho h_t + b_o); the top is o."""
    TYPE = "RNN"

    def unroll(self, inputs, cont, static, state, weights):
        w_hh, w_ho, b_o = weights
        (h,) = state
        outputs = []
        for t in range(inputs.shape[0]):
            conted = h * cont[t:t + 1].unsqueeze(-1)
            total = conted @ w_hh.t() + inputs[t:t + 1]
            h = torch.tanh(total if static is None else total + static)
            outputs.append(torch.tanh(h @ w_ho.t() + b_o))
        return torch.cat(outputs, dim=0), [h]


@register
class LSTM(Recurrent):
    """gates_t = W_hc (cont_t h_{t-1}) + W_xc x_t + b_c [+ W_xc_static x_static], then an
    LSTMUnit step; the top is h (with expose_hidden also h_T and c_T)."""
    TYPE = "LSTM"
    STATES = 2  # h, c (expose_hidden's bottoms h_0, c_0 and tops h_T, c_T)

    def unroll(self, inputs, cont, static, state, weights):
        (w_hc,) = weights
        h, c = state
        outputs = []
        for t in range(inputs.shape[0]):
            step_cont = cont[t:t + 1]
            gates = (h * step_cont.unsqueeze(-1)) @ w_hc.t() + inputs[t:t + 1]
            if static is not None:
                gates = gates + static
            c, h = _LSTMUnit.apply(c, gates, step_cont)
            outputs.append(h)
        return torch.cat(outputs, dim=0), [h, c]
