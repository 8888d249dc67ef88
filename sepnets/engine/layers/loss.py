"""Softmax, SoftmaxWithLoss (normalization modes, ignore_label) and Accuracy (top_k)."""
import math

import numpy as np
import torch

from sepnets.caffe.proto import caffe_pb2
from sepnets.caffe.shapes import canonical_axis
from sepnets.engine.layers.base import Layer, register

Normalization = caffe_pb2.LossParameter
LOG_FLT_MIN = math.log(float(np.finfo(np.float32).tiny))


def _class_view(x, axis):
    """(outer, classes, inner) view of a score blob with classes along `axis`."""
    outer = int(np.prod(x.shape[:axis], dtype=np.int64))
    return x.reshape(outer, x.shape[axis], -1)


def _labels(label, outer, inner):
    return label.reshape(outer, inner).long()


@register
class Softmax(Layer):
    TYPE = "Softmax"
    PARAMS = ("softmax_param",)
    FIELDS = {"softmax_param": {"axis", "engine"}}
    NUM_BOTTOMS = 1
    NUM_TOPS = 1

    def setup(self, shapes):
        self.axis = canonical_axis(self.param, self.param.softmax_param.axis,
                                   len(self.bottom_shapes[0]))

    def forward(self, bottoms):
        return [torch.softmax(bottoms[0], dim=self.axis)]


class LossLayer(Layer):
    """Layers whose first top is a loss: weight 1 unless loss_weight says otherwise."""
    IS_LOSS = True


@register
class SoftmaxWithLoss(LossLayer):
    """-sum(log(max(p[label], FLT_MIN))) / normalizer; gradient (p - onehot) / normalizer,
    zero where the label is ignore_label. One top: stock Caffe 1.0 cannot set up the optional
    second (probabilities) top (its inner Softmax layer rejects the loss weights)."""
    TYPE = "SoftmaxWithLoss"
    PARAMS = ("loss_param", "softmax_param")
    FIELDS = {"loss_param": {"ignore_label", "normalization", "normalize"},
              "softmax_param": {"axis", "engine"}}
    NUM_BOTTOMS = 2
    NUM_TOPS = 1

    def setup(self, shapes):
        p = self.param.loss_param
        shape = self.bottom_shapes[0]
        self.axis = canonical_axis(self.param, self.param.softmax_param.axis, len(shape))
        self.outer = int(np.prod(shape[:self.axis], dtype=np.int64))
        self.inner = int(np.prod(shape[self.axis + 1:], dtype=np.int64))
        if self.outer * self.inner != int(np.prod(self.bottom_shapes[1], dtype=np.int64)):
            self.fail(f"number of labels must match number of predictions: scores "
                      f"{shape} along axis {self.axis}, labels {self.bottom_shapes[1]}")
        self.ignore = p.ignore_label if p.HasField("ignore_label") else None
        if p.HasField("normalization"):
            self.normalization = p.normalization
        elif p.HasField("normalize"):
            self.normalization = Normalization.VALID if p.normalize else Normalization.BATCH_SIZE
        else:
            self.normalization = Normalization.VALID

    def _normalizer(self, valid_count):
        mode = self.normalization
        if mode == Normalization.FULL:
            value = self.outer * self.inner
        elif mode == Normalization.VALID:
            value = self.outer * self.inner if valid_count is None else valid_count
        elif mode == Normalization.BATCH_SIZE:
            value = self.outer
        else:
            value = 1
        return torch.clamp(torch.as_tensor(value, dtype=torch.float32), min=1.0)

    def forward(self, bottoms):
        scores, label = bottoms
        log_prob = torch.log_softmax(scores, dim=self.axis)
        labels = _labels(label, self.outer, self.inner)
        valid = None
        if self.ignore is not None:
            valid = labels != self.ignore
            labels = labels.masked_fill(~valid, 0)
        picked = _class_view(log_prob, self.axis).gather(1, labels.unsqueeze(1)).squeeze(1)
        # forward value clamped like Caffe's log(max(p, FLT_MIN)); gradient of the unclamped
        picked = picked + (picked.clamp(min=LOG_FLT_MIN) - picked).detach()
        if valid is not None:
            picked = picked * valid
            count = valid.sum().to(torch.float32)
        else:
            count = None
        normalizer = self._normalizer(count).to(scores.device)
        return [-picked.sum() / normalizer]


@register
class Accuracy(Layer):
    """Fraction of (non-ignored) predictions whose true class is among the top_k scores;
    a tie with the true class's score counts against it (Caffe's >= rule)."""
    TYPE = "Accuracy"
    PARAMS = ("accuracy_param",)
    FIELDS = {"accuracy_param": {"top_k", "axis", "ignore_label"}}
    NUM_BOTTOMS = 2
    NUM_TOPS = (1, 2)

    def setup(self, shapes):
        p = self.param.accuracy_param
        shape = self.bottom_shapes[0]
        self.axis = canonical_axis(self.param, p.axis, len(shape))
        self.outer = int(np.prod(shape[:self.axis], dtype=np.int64))
        self.inner = int(np.prod(shape[self.axis + 1:], dtype=np.int64))
        labels = int(np.prod(self.bottom_shapes[1], dtype=np.int64))
        if self.outer * self.inner != labels:
            self.fail(f"number of labels must match number of predictions: scores {shape} "
                      f"along axis {self.axis}, labels {self.bottom_shapes[1]}")
        self.top_k = p.top_k
        if self.top_k > int(np.prod(shape, dtype=np.int64)) // labels:
            self.fail("top_k must be less than or equal to the number of classes")
        self.ignore = p.ignore_label if p.HasField("ignore_label") else None
        self.classes = shape[self.axis]

    def forward(self, bottoms):
        with torch.no_grad():
            scores = _class_view(bottoms[0], self.axis)
            labels = _labels(bottoms[1], self.outer, self.inner)
            valid = torch.ones_like(labels, dtype=torch.bool)
            if self.ignore is not None:
                valid = labels != self.ignore
            safe = labels.masked_fill(~valid, 0)
            true_score = scores.gather(1, safe.unsqueeze(1))
            at_least = (scores >= true_score).sum(dim=1)  # includes the true class itself
            correct = (at_least <= self.top_k) & valid
            count = valid.sum()
            accuracy = correct.sum().to(torch.float32) / count.clamp(min=1).to(torch.float32)
            tops = [accuracy]
            if len(self.param.top) > 1:
                per_label = torch.zeros(self.classes, dtype=torch.float32, device=scores.device)
                hits = torch.zeros_like(per_label)
                per_label.index_add_(0, safe[valid], torch.ones_like(safe[valid], dtype=torch.float32))
                hits.index_add_(0, safe[correct], torch.ones_like(safe[correct], dtype=torch.float32))
                tops.append(torch.where(per_label > 0, hits / per_label.clamp(min=1),
                                        torch.zeros_like(hits)))
        return tops
