"""Networks: building them and measuring them.

    netspec     a NetSpec-like builder of NetParameter messages (layers, fillers, param specs)
    blocks      the paper's building blocks: conv+BatchNorm+Scale+ReLU, the ResNet block, the
                Inception module, the pattern residual block, the SEP module
    zoo/        one short description per network of the paper and its baselines, and the
                registry (zoo.NETWORKS) that `make nets` writes under prototxt/<name>/
    generate    train_val, deploy and solver prototxts from a description; the README's table
    analysis    netinfo: shapes, parameters by kind, MACs, R/B/BQ sizes, the main path, and
                whether a caffemodel's blobs fit a net

May import sepnets.caffe (files, shapes, net state) and the top-level modules; nothing above.
"""
