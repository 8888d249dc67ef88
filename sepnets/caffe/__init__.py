"""Caffe's files and rules, without torch: what everything else builds on.

    proto, proto_build  upstream caffe.proto (brocolli-caffe 3.0.0's copy, sha256-checked),
                        compiled at set-up into _generated/
    wire                the protobuf wire format of the bulky parts (blobs read with numpy)
    files               reading and writing prototxts, solvers, caffemodels, binaryprotos,
                        solverstates: one-line errors, atomic writes, inputs never overwritten
    upgrade             every upgrade Caffe applies while reading a net or a solver
    netstate            which layers a phase/level/stage has (Net::FilterNet)
    shapes              shape inference by Caffe's Reshape rules (every layer's shape rule)
    db                  LevelDB/LMDB Datum databases: where a Datum is decoded
    images              image decoding and resizing as Caffe's io.cpp does it
    glog                Caffe's log lines (glog format), as both engines print them
    stock               running stock Caffe: the caffe tool, its other programs, pycaffe
    engines             the `caffe` command of either engine (stock or sepnets.engine), and
                        `caffe test`'s scores read back
    snapshots           which snapshot pair a run can resume from (damaged ones moved aside),
                        an interrupted snapshot's temporaries, Caffe's write probe
    runlock             one run at a time on a workspace or a snapshot prefix (flock)

`python -m sepnets.caffe train|test|time` is the engine's caffe tool (__main__ hands over to
sepnets.engine.commands). May import only the top-level modules (errors, names, paths).
"""
