"""Training logs: Caffe's glog output (stock Caffe's, rc to 1.0, and the engine's, which prints
the same lines) read into parse_log.py's tables, drawn, and summarized.

    scan        finds the solver's lines in the bytes with numpy (no regular expression a line)
    parse       joins them into runs and series (resumed runs, several processes, cut-off
                logs) and Caffe's parse_log.py tables: where a log line's meaning is decided
    figure      the plot (matplotlib): loss, learning rate, one panel per output
    summary     the tables as parse_log.py's CSV files, and the per-training summary

May import sepnets.caffe (files) and the top-level modules; nothing above.
"""
