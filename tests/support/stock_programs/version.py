"""Stock pycaffe: caffe.__version__."""
import caffe

print(caffe.__version__)
