"""Softmax, Accuracy (top_k) and the loss layers: SoftmaxWithLoss, SigmoidCrossEntropyLoss,
InfogainLoss (normalization modes, ignore_label), EuclideanLoss, HingeLoss (L1/L2),
MultinomialLogisticLoss and ContrastiveLoss."""
import math

import numpy as np
import torch
import torch.nn.functional as F

from sepnets.caffe import files
from sepnets.caffe.proto import caffe_pb2
from sepnets.caffe.shapes import canonical_axis, legacy_axes
from sepnets.engine.layers.base import Layer, given_gradient, register

Normalization = caffe_pb2.LossParameter
LOG_FLT_MIN = math.log(float(np.finfo(np.float32).tiny))
LOG_THRESHOLD = np.float32(1e-20)  # Caffe's kLOG_THRESHOLD (loss_layer.hpp)


def _class_view(x, axis):
    """(outer, classes, inner) view of a score blob with classes along `axis`."""
    outer = int(np.prod(x.shape[:axis], dtype=np.int64))
    return x.reshape(outer, x.shape[axis], -1)


def _labels(label, outer, inner):
    return label.reshape(outer, inner).long()


def _around(x, axis):
    """(outer, inner): the counts before and after `axis` of the tensor itself (a Filter
    before a loss changes the batch after set-up, as Caffe's Reshape follows)."""
    return math.prod(x.shape[:axis]), math.prod(x.shape[axis + 1:])


def floor_keeping_gradient(x, low):
    """max(x, low) as Caffe's losses clamp before a log, with the gradient of x itself (their
    Backward ignores the clamp)."""
    return x + (x.clamp(min=low) - x).detach()


def normalization_mode(param, default):
    """LossParameter's normalization, or the deprecated normalize (true: VALID, false:
    BATCH_SIZE), or the layer's default."""
    if param.HasField("normalization"):
        return param.normalization
    if param.HasField("normalize"):
        return Normalization.VALID if param.normalize else Normalization.BATCH_SIZE
    return default


def normalizer(mode, outer, inner, valid_count=None):
    """Caffe's get_normalizer, as a float32 tensor: FULL outer * inner, VALID the count of
    labels not ignored (outer * inner without ignore_label), BATCH_SIZE outer, NONE 1; at
    least 1."""
    if mode == Normalization.FULL:
        value = outer * inner
    elif mode == Normalization.VALID:
        value = outer * inner if valid_count is None else valid_count
    elif mode == Normalization.BATCH_SIZE:
        value = outer
    else:
        value = 1
    return torch.clamp(torch.as_tensor(value, dtype=torch.float32), min=1.0)


@register
class Softmax(Layer):
    TYPE = "Softmax"
    PARAMS = ("softmax_param",)
    FIELDS = {"softmax_param": {"axis", "engine"}}

    def setup(self, shapes):
        self.axis = canonical_axis(self.param, self.param.softmax_param.axis,
                                   len(self.bottom_shapes[0]))

    def forward(self, bottoms):
        return [torch.softmax(bottoms[0], dim=self.axis)]


class LossLayer(Layer):
    """Layers whose first top is a loss: weight 1 unless loss_weight says otherwise. Caffe
    never back-propagates into their second bottom (the labels: LossLayer's
    AllowForceBackward), and checks that both bottoms have the same first dimension."""
    IS_LOSS = True
    NO_GRADIENT = (1,)

    def setup(self, shapes):
        first, second = self.bottom_shapes[:2]
        if (first[:1] or (1,)) != (second[:1] or (1,)):
            self.fail("The data and label should have the same first dimension.")
        self.setup_loss(shapes)

    def setup_loss(self, shapes):
        pass

    def checked_labels(self, label, classes, ignore=None):
        """Labels as integers (C++'s static_cast<int>), refused outside [0, classes) unless
        ignored: stock Caffe reads out of bounds there."""
        labels = label.long()
        valid = labels if ignore is None else labels[labels != ignore]
        if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) >= classes):
            bad = int(valid.min()) if int(valid.min()) < 0 else int(valid.max())
            self.fail(f"label {bad} outside [0, {classes}) (stock Caffe reads out of bounds)")
        return labels


@register
class SoftmaxWithLoss(LossLayer):
    """-sum(log(max(p[label], FLT_MIN))) / normalizer; gradient (p - onehot) / normalizer,
    zero where the label is ignore_label. One top: stock Caffe 1.0 cannot set up the optional
    second (probabilities) top (its inner Softmax layer rejects the loss weights)."""
    TYPE = "SoftmaxWithLoss"
    PARAMS = ("loss_param", "softmax_param")
    FIELDS = {"loss_param": {"ignore_label", "normalization", "normalize"},
              "softmax_param": {"axis", "engine"}}
    MAX_TOPS = 1  # the second top, as the docstring says

    def setup_loss(self, shapes):
        p = self.param.loss_param
        shape = self.bottom_shapes[0]
        self.axis = canonical_axis(self.param, self.param.softmax_param.axis, len(shape))
        self.outer = int(np.prod(shape[:self.axis], dtype=np.int64))
        self.inner = int(np.prod(shape[self.axis + 1:], dtype=np.int64))
        if self.outer * self.inner != int(np.prod(self.bottom_shapes[1], dtype=np.int64)):
            self.fail(f"number of labels must match number of predictions: scores "
                      f"{shape} along axis {self.axis}, labels {self.bottom_shapes[1]}")
        self.ignore = p.ignore_label if p.HasField("ignore_label") else None
        self.normalization = normalization_mode(p, Normalization.VALID)
        self.classes = shape[self.axis]

    def forward(self, bottoms):
        scores, label = bottoms
        outer, inner = _around(scores, self.axis)
        log_prob = torch.log_softmax(scores, dim=self.axis)
        labels = self.checked_labels(_labels(label, outer, inner), self.classes, self.ignore)
        valid = None
        if self.ignore is not None:
            valid = labels != self.ignore
            labels = labels.masked_fill(~valid, 0)
        picked = _class_view(log_prob, self.axis).gather(1, labels.unsqueeze(1)).squeeze(1)
        # forward value clamped like Caffe's log(max(p, FLT_MIN)); gradient of the unclamped
        picked = floor_keeping_gradient(picked, LOG_FLT_MIN)
        if valid is not None:
            picked = picked * valid
            count = valid.sum().to(torch.float32)
        else:
            count = None
        scale = normalizer(self.normalization, outer, inner, count).to(scores.device)
        return [-picked.sum() / scale]


@register
class Accuracy(Layer):
    """Fraction of (non-ignored) predictions whose true class is among the top_k scores;
    a tie with the true class's score counts against it (Caffe's >= rule)."""
    TYPE = "Accuracy"
    PARAMS = ("accuracy_param",)
    FIELDS = {"accuracy_param": {"top_k", "axis", "ignore_label"}}

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
            labels = _labels(bottoms[1], *_around(bottoms[0], self.axis))
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


@register
class EuclideanLoss(LossLayer):
    """sum((a - b)^2) / N / 2; both bottoms get a gradient (Caffe lets force_backward reach
    the second too)."""
    TYPE = "EuclideanLoss"
    NO_GRADIENT = ()

    def setup_loss(self, shapes):
        a, b = self.bottom_shapes
        if math.prod(a[1:]) != math.prod(b[1:]):
            self.fail("Inputs must have the same dimension.")

    def forward(self, bottoms):
        a, b = bottoms
        diff = a - b.reshape(a.shape)
        return [(diff * diff).sum() / a.shape[0] / 2]


@register
class SigmoidCrossEntropyLoss(LossLayer):
    """-sum(t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))) over the targets not ignored
    (static_cast<int>(t) == ignore_label), computed stably; normalized by BATCH_SIZE unless
    loss_param says otherwise. Gradient sigmoid(x) - t, 0 where ignored."""
    TYPE = "SigmoidCrossEntropyLoss"
    PARAMS = ("loss_param",)
    FIELDS = {"loss_param": {"ignore_label", "normalization", "normalize"}}

    def setup_loss(self, shapes):
        x, t = self.bottom_shapes
        if math.prod(x) != math.prod(t):
            self.fail("SIGMOID_CROSS_ENTROPY_LOSS layer inputs must have the same count.")
        p = self.param.loss_param
        self.ignore = p.ignore_label if p.HasField("ignore_label") else None
        self.normalization = normalization_mode(p, Normalization.BATCH_SIZE)

    def forward(self, bottoms):
        x, target = bottoms[0], bottoms[1].reshape(bottoms[0].shape)
        terms = F.binary_cross_entropy_with_logits(x, target, reduction="none")
        count = None
        if self.ignore is not None:
            valid = target.to(torch.int32) != self.ignore
            terms = torch.where(valid, terms, torch.zeros_like(terms))
            count = valid.sum().to(torch.float32)
        else:
            count = terms.numel()
        scale = normalizer(self.normalization, x.shape[0], math.prod(x.shape[1:]), count)
        scale = scale.to(x.device)
        return [terms.sum() / scale]


@register
class HingeLoss(LossLayer):
    """Per item i with label l_i: margins max(0, 1 + x_ij) for j != l_i and
    max(0, 1 - x_il); the L1 norm (default) or L2 norm (squares) of them, over N."""
    TYPE = "HingeLoss"
    PARAMS = ("hinge_loss_param",)
    FIELDS = {"hinge_loss_param": {"norm"}}

    def setup_loss(self, shapes):
        legacy_axes(self.param, self.bottom_shapes[0])  # Caffe's num/count view
        self.squared = self.param.hinge_loss_param.norm == caffe_pb2.HingeLossParameter.L2

    def forward(self, bottoms):
        num = bottoms[0].shape[0]
        x = bottoms[0].reshape(num, -1)
        # Caffe reads the first N label values, whatever the label blob's shape
        labels = self.checked_labels(bottoms[1].reshape(-1)[:num], x.shape[1])
        sign = torch.ones_like(x).scatter_(1, labels[:, None], -1.0)
        margins = torch.relu(1 + sign * x)
        return [(margins * margins if self.squared else margins).sum() / num]


@register
class MultinomialLogisticLoss(LossLayer):
    """-sum(log(max(p[label], 1e-20))) / N for predicted probabilities p (N, K); gradient
    -1 / (N max(p[label], 1e-20)) at the label."""
    TYPE = "MultinomialLogisticLoss"

    def setup_loss(self, shapes):
        if legacy_axes(self.param, self.bottom_shapes[1])[1:] != (1, 1, 1):
            self.fail(f"the label blob must be N x 1 x 1 x 1, not {self.bottom_shapes[1]}")

    def forward(self, bottoms):
        num = bottoms[0].shape[0]
        p = bottoms[0].reshape(num, -1)
        labels = self.checked_labels(bottoms[1].reshape(-1), p.shape[1])
        picked = floor_keeping_gradient(p.gather(1, labels[:, None])[:, 0], float(LOG_THRESHOLD))
        return [-torch.log(picked).sum() / num]


@register
class InfogainLoss(LossLayer):
    """-sum over labels l not ignored of sum_k H[l, k] log(max(softmax(x)_k, 1e-20)),
    normalized (VALID by default; the deprecated normalize is refused, as in Caffe). H is
    the K x K matrix in infogain_loss_param.source (a binaryproto), or the third bottom; the
    softmax runs along infogain_loss_param.axis. Gradient p sum_k H[l, k] - H[l, :]. An
    optional second top holds the probabilities (Caffe back-propagates nothing from it)."""
    TYPE = "InfogainLoss"
    PARAMS = ("loss_param", "infogain_loss_param", "softmax_param")
    FIELDS = {"loss_param": {"ignore_label", "normalization", "normalize"},
              "infogain_loss_param": {"source", "axis"}, "softmax_param": {"engine"}}
    NO_GRADIENT = (1, 2)

    def force_backward_failure(self):
        if len(self.param.bottom) == 3:  # LossLayer lets force_backward reach the matrix
            return "InfogainLoss Layer cannot backpropagate to infogain inputs"
        return None

    def setup_loss(self, shapes):
        p, q = self.param.loss_param, self.param.infogain_loss_param
        if p.HasField("normalize"):
            self.fail('normalize is deprecated. use "normalization"')
        self.ignore = p.ignore_label if p.HasField("ignore_label") else None
        self.normalization = p.normalization
        shape = self.bottom_shapes[0]
        self.axis = canonical_axis(self.param, q.axis, len(shape))
        self.classes = shape[self.axis]
        if math.prod(shape) // self.classes != math.prod(self.bottom_shapes[1]):
            self.fail("Number of labels must match number of predictions")
        self.matrix = None
        if len(self.param.bottom) < 3:
            if not q.HasField("source"):
                self.fail("Infogain matrix source must be specified.")
            self.matrix = torch.from_numpy(files.read_blobproto(q.source).astype(np.float32)
                                           .reshape(-1)).to(self.ctx.device)
        count = self.matrix.numel() if self.matrix is not None else math.prod(self.bottom_shapes[2])
        if count != self.classes * self.classes:
            self.fail(f"H must be {self.classes}x{self.classes} ({count} values given)")

    def forward(self, bottoms):
        x = bottoms[0]
        matrix = (self.matrix if self.matrix is not None else bottoms[2]).reshape(
            self.classes, self.classes)
        outer, inner = _around(x, self.axis)
        labels = self.checked_labels(_labels(bottoms[1], outer, inner), self.classes, self.ignore)
        log_prob = _class_view(torch.log_softmax(x, dim=self.axis), self.axis)
        log_prob = floor_keeping_gradient(log_prob, math.log(float(LOG_THRESHOLD)))
        count = None
        if self.ignore is not None:
            valid = labels != self.ignore
            labels = labels.masked_fill(~valid, 0)
            count = valid.sum().to(torch.float32)
        rows = matrix[labels].permute(0, 2, 1)  # (outer, K, inner): H[label, k]
        terms = (rows * log_prob).sum(dim=1)
        if self.ignore is not None:
            terms = torch.where(valid, terms, torch.zeros_like(terms))
        scale = normalizer(self.normalization, outer, inner, count).to(x.device)
        tops = [-terms.sum() / scale]
        if len(self.param.top) > 1:
            tops.append(torch.softmax(x, dim=self.axis).detach())
        return tops


@register
class ContrastiveLoss(LossLayer):
    """Pairs (a_i, b_i) with similarity y_i (N x C x 1 x 1, N x 1 x 1 x 1): d_i = |a_i - b_i|;
    loss sum(y_i ? d_i^2 : max(margin - d_i, 0)^2) / N / 2 (legacy_version: max(margin -
    d_i^2, 0) for dissimilar pairs). Its gradient is Caffe's Backward, which divides by
    d_i + 1e-4 where the derivative divides by d_i."""
    TYPE = "ContrastiveLoss"
    PARAMS = ("contrastive_loss_param",)
    FIELDS = {"contrastive_loss_param": {"margin", "legacy_version"}}
    NO_GRADIENT = (2,)

    def setup_loss(self, shapes):
        a, b, y = (legacy_axes(self.param, s) for s in self.bottom_shapes)
        if a[1] != b[1] or a[2:] != (1, 1) or b[2:] != (1, 1) or y[1:] != (1, 1, 1):
            self.fail(f"bottoms must be N x C x 1 x 1, N x C x 1 x 1 and N x 1 x 1 x 1, not "
                      f"{self.bottom_shapes}")
        self.channels = a[1]
        p = self.param.contrastive_loss_param
        self.margin, self.legacy = float(np.float32(p.margin)), p.legacy_version

    def forward(self, bottoms):
        a, b, y = bottoms
        num = a.shape[0]
        with torch.no_grad():
            diff = (a - b).reshape(num, self.channels)
            squared = (diff * diff).sum(dim=1)
            similar = y.reshape(-1)[:num].to(torch.int32) != 0
            if self.legacy:
                short = self.margin - squared
                dissimilar = short.clamp(min=0)
                slope = torch.full_like(short, -1.0)
            else:
                distance = torch.sqrt(squared)
                short = self.margin - distance
                dissimilar = short.clamp(min=0) ** 2
                slope = -short / (distance + 1e-4)
            loss = torch.where(similar, squared, dissimilar).sum() / num / 2
            slope = torch.where(similar, torch.ones_like(slope),
                                torch.where(short > 0, slope, torch.zeros_like(slope)))
            gradient = (slope / num)[:, None] * diff
        return [given_gradient(loss, [(a, gradient.reshape(a.shape)),
                                      (b, -gradient.reshape(b.shape))])]
