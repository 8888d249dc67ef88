"""Dataset converters: MNIST, CIFAR-10 (the SEP-Nets authors' three variants) and ImageNet-style
image lists into the LevelDB/LMDB Datum databases and mean files stock Caffe reads."""
