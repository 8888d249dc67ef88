"""Finds the lines of Caffe's solver in a glog text in bulk: numpy over the bytes instead of
a regular expression per line (Python's `re` costs ~0.3 us a match, too slow for long
logs), and the texts of fields cut out together rather than one slice at a time.

A glog line: `I0418 16:30:46.830205  2203 solver.cpp:219] MESSAGE` (severity, MMDD or newer
glog's YYYYMMDD, time to the microsecond, thread id, source). The messages kept are listed
in sepnets.trainlog.parse's docstring: Train/Test net output lines, "Iteration N ..." lines (display, lr,
Testing net) and the solver's events. Every other line is skipped.
"""
import re
from dataclasses import dataclass
from datetime import date

import numpy as np

TRAIN_OUT, TEST_OUT, DISPLAY, LR, TESTING, EVENT = range(6)
EVENTS = ("Solving", "Resuming from", "Restoring previous solver status from",
          "Optimization Done", "Optimization stopped early", "Snapshotting solver state to",
          "Initializing solver from parameters")
# bytes the scanner looks for, by name
NEWLINE, CARRIAGE_RETURN, SPACE = ord("\n"), ord("\r"), ord(" ")
BRACKET, COLON, DOT, CLOSE_PAREN = ord("]"), ord(":"), ord("."), ord(")")
DIGIT_0, LETTER_N = ord("0"), ord("n")
SEVERITIES = np.frombuffer(b"IWEF", np.uint8)   # glog's INFO, WARNING, ERROR, FATAL
_PAD = 320                # zero bytes after the text: fixed-width reads never run past it
_NUMBER = 40              # a number Caffe prints ("-1.17549e-38") is far shorter
_NAME = 256               # the longest output name read
_LOSS_TERM = re.compile(rb" \(\* [^ ]+ = ([^ ]+) loss\)")
# the bytes of a number as Caffe prints it: digits, ., e, E, +, -, nan, inf (and padding)
_NUMBER_BYTES = np.zeros(256, bool)
_NUMBER_BYTES[list(b"0123456789.eE+-nafiNAFI ")] = True


@dataclass
class SolverLines:
    """The solver's lines in file order, one array entry each."""
    raw: bytes                  # the whole log
    offset: np.ndarray          # where the line starts in `raw`
    kind: np.ndarray            # TRAIN_OUT ... EVENT
    tid: np.ndarray             # glog's thread id
    usec: np.ndarray            # time stamp in microseconds (see _day_numbers for the year)
    iteration: np.ndarray       # DISPLAY, LR, TESTING: N; -1 otherwise
    net: np.ndarray             # TESTING: the test net's number
    output: np.ndarray          # outputs: K of "output #K"
    name: np.ndarray            # outputs: the output's name; EVENT: which of EVENTS
    value: np.ndarray           # outputs: value; DISPLAY: loss; LR: rate; EVENT: the rest
    tail: np.ndarray            # outputs printed with " (* W = Z loss)": where it starts; else -1
    tail_end: np.ndarray
    rejected: int = 0           # lines that look like the solver's but are not well formed

    def weighted(self, idx):
        """The Z texts of the output lines `idx` (each printed with a loss weight; '' where
        " (* W = Z loss)" is not well formed)."""
        found = (_LOSS_TERM.fullmatch(self.raw, a, b) for a, b in
                 zip(self.tail[idx].tolist(), self.tail_end[idx].tolist()))
        return [m.group(1).decode("latin-1") if m else "" for m in found]


def _word(text):
    """The first 8 bytes of `text` as the uint64 that `words` reads where they stand, and
    the mask of their bytes (fewer than 8: the rest are not compared)."""
    raw = (text.encode() if isinstance(text, str) else text)[:8]
    return (np.frombuffer(raw.ljust(8, b"\0"), "<u8")[0],
            np.frombuffer(b"\xff" * len(raw) + b"\0" * (8 - len(raw)), "<u8")[0])


# Tests on the 8 bytes of a uint64 at once, exact byte by byte (no carry crosses a byte):
# each gives a mask with bit 7 of every byte that passes.
_ONES = np.uint64(0x0101010101010101)
_HIGH = np.uint64(0x8080808080808080)
_LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)
_BYTE_MASKS = np.array([_word(b"\xff" * k)[1] for k in range(9)])   # the first k bytes
_SPACES = _word(b" " * 8)[0]
_CLOCK_DIGITS = _word(b"\xff\xff\0\xff\xff\0\xff\xff")[0]


def _at_most(x, n):
    """Bytes <= n (n < 0x80)."""
    return ~(((x & _LOW7) + _ONES * np.uint64(0x7F - n)) | x) & _HIGH


def _nondigits(x):
    """Bytes that are not '0'..'9'."""
    return _at_most(x, 0x2F) | (((x & _LOW7) + _ONES * np.uint64(0x7F - 0x39)) | x) & _HIGH


def _first_byte(mask):
    """Index (0..7) of the first (lowest-addressed) byte a mask marks; 8 when none."""
    lowest = mask & (~mask + np.uint64(1))
    index = np.log2(np.maximum(lowest, np.uint64(1)).astype(np.float64)).astype(np.int64) // 8
    return np.where(mask == 0, 8, index)


def _last_byte(mask):
    """Index (0..7) of the last byte a mask marks; -1 when none."""
    index = np.log2(np.maximum(mask, np.uint64(1)).astype(np.float64)).astype(np.int64) // 8
    return np.where(mask == 0, -1, index)


class _Bytes:
    """The text, zero-padded, read 8 bytes at a time at many positions at once."""

    def __init__(self, raw):
        self.n = len(raw)
        self.buf = np.zeros(self.n + _PAD, np.uint8)
        self.buf[:self.n] = np.frombuffer(raw, np.uint8)
        # element i: the 8 bytes from byte i on, as a little-endian uint64 (overlapping)
        self.at = np.ndarray(shape=(len(self.buf) - 7,), dtype="<u8", buffer=self.buf,
                             strides=(1,))

    def words(self, pos):
        """The 8 bytes at each position, as one uint64 each."""
        return self.at[pos]

    def positions(self, byte):
        return np.flatnonzero(self.buf[:self.n] == byte)

    def starts_with(self, pos, word):
        """Whether the bytes at each position are `word`."""
        ok = np.ones(len(pos), bool)
        for at in range(0, len(word), 8):
            value, mask = _word(word[at:at + 8])
            ok &= (self.words(pos + at) & mask) == value
        return ok

    def find_first(self, pos, test, longest):
        """Offset from each position of the first byte within `longest` that `test` (a mask
        function of a word) marks; -1 where there is none."""
        found = np.full(len(pos), -1, np.int64)
        left = np.arange(len(pos))
        for at in range(0, longest, 8):
            first = _first_byte(test(self.words(pos[left] + at)))
            hit = first < np.minimum(8, longest - at)
            found[left[hit]] = at + first[hit]
            left = left[~hit]
            if not len(left):
                break
        return found

    def digits(self, pos, longest=18):
        """The decimal number at each position and its count of digits (0: none, or more
        than `longest`)."""
        count = np.maximum(self.find_first(pos, _nondigits, longest + 1), 0)
        number = _eight_digits(self.words(pos), np.minimum(count, 8))
        for k in np.flatnonzero(count > 8).tolist():            # rare: read one by one
            number[k] = int(self.buf[pos[k]:pos[k] + count[k]].tobytes())
        return np.where(count > 0, number, 0), count

    def fixed_digits(self, pos, width):
        """The `width`-digit (<= 8) number at each position; -1 where one is not a digit."""
        words = self.words(pos)
        mask = _word(b"\xff" * width)[0]
        return np.where(_nondigits(words) & mask & _HIGH == 0, _eight_digits(words, width), -1)

    def token_end(self, pos, longest=_NUMBER):
        """Where the token at each position ends (its first byte <= space); pos when it is
        longer than `longest`."""
        offset = self.find_first(pos, lambda x: _at_most(x, 0x20), longest + 1)
        return pos + np.maximum(offset, 0)

    def last_token(self, ends):
        """Where the last token before each line end starts; the end when it is longer than
        a number."""
        start = ends.copy()
        left = np.arange(len(ends))
        for back in range(8, _NUMBER + 9, 8):
            last = _last_byte(_at_most(self.words(np.maximum(ends[left] - back, 0)), 0x20))
            hit = last >= 0
            start[left[hit]] = ends[left[hit]] - back + last[hit] + 1
            left = left[~hit]
            if not len(left):
                break
        return start


def _eight_digits(words, count):
    """The numbers whose `count` (1..8) ASCII digits start each uint64 word: the digits are
    moved to the word's end and combined pairwise in three multiplications (the classic
    eight-digits-at-once parse; numpy's uint64 arithmetic wraps as C's does)."""
    shift = ((8 - np.asarray(count, np.int64)) * 8).astype(np.uint64)
    v = words << shift                          # a shift by 64 (no digits) gives 0
    v = ((v & np.uint64(0x0F0F0F0F0F0F0F0F)) * np.uint64(2561)) >> np.uint64(8)
    v = ((v & np.uint64(0x00FF00FF00FF00FF)) * np.uint64(6553601)) >> np.uint64(16)
    v = ((v & np.uint64(0x0000FFFF0000FFFF)) * np.uint64(42949672960001)) >> np.uint64(32)
    return v.astype(np.int64)


def scan(raw):
    """The solver lines of `raw` (bytes whose last line ends with a newline)."""
    b = _Bytes(raw)
    ends = b.positions(NEWLINE)
    brackets = b.positions(BRACKET)

    # candidates: "] " followed by a message the solver prints, told by its first 8 bytes
    head = b.words(brackets + 2)
    wanted = [_word(w)[0] for w in ("    Trai", "    Test", "Iteratio")] \
        + [_word(w + " ")[0] for w in EVENTS]
    cand = np.flatnonzero(np.isin(head, np.array(wanted))
                          & (b.buf[brackets + 1] == SPACE))
    # a solver line ("Iteration N", "net output #") that is not well formed counts as rejected
    rowlike = np.isin(head[cand], np.array(wanted[:2])) \
        | ((head[cand] == wanted[2]) & (b.buf[brackets[cand] + 10] == LETTER_N)
           & (b.buf[brackets[cand] + 11] == SPACE) & (b.buf[brackets[cand] + 12] - DIGIT_0 <= 9))
    bracket, head = brackets[cand], head[cand]
    line = np.searchsorted(ends, bracket)
    s = np.where(line > 0, ends[np.maximum(line - 1, 0)] + 1, 0)
    e = ends[line]
    e = e - (b.buf[np.maximum(e - 1, 0)] == CARRIAGE_RETURN)                      # a CRLF log

    # glog's prefix: severity, date, time, thread id, and this "] " the first after them
    severity = b.buf[s]
    datelen = np.where(b.buf[s + 5] == SPACE, 4, np.where(b.buf[s + 9] == SPACE, 8, 0))
    t = s + datelen + 2
    ok = np.isin(severity, SEVERITIES) & (datelen > 0) \
        & (b.buf[t + 2] == COLON) & (b.buf[t + 5] == COLON) & (b.buf[t + 8] == DOT) \
        & (b.buf[t + 15] == SPACE)
    stamp = b.fixed_digits(s + 1, 4)
    if (datelen == 8).any():
        stamp = np.where(datelen == 4, stamp, b.fixed_digits(s + 1, 8))
    # the thread id, right-aligned in 5 columns (wider when it has more digits)
    tid_end = t + 21
    wide = np.flatnonzero(b.buf[tid_end] != SPACE)
    tid_end[wide] = b.token_end(tid_end[wide], 8)
    field = b.words(tid_end - 8) & ~_BYTE_MASKS[np.maximum(8 - (tid_end - t - 16), 0)]
    tid = _eight_digits(field, 8)                       # the spaces before it count 0
    tid_ok = (_nondigits(field) & ~_BYTE_MASKS[7] == 0) & (b.buf[tid_end] == SPACE) \
        & (tid_end - t - 16 <= 8)                      # (its last byte a digit)
    first = brackets[np.minimum(np.searchsorted(brackets, tid_end), len(brackets) - 1)]
    ok &= (stamp >= 0) & tid_ok & (first == bracket)
    s, e, t, datelen, stamp, tid, body, head = s[ok], e[ok], t[ok], datelen[ok], stamp[ok], \
        tid[ok], bracket[ok] + 2, head[ok]
    usec = _usec(b, t, stamp, datelen)
    ok = usec >= 0
    s, e, usec, tid, body, head = s[ok], e[ok], usec[ok], tid[ok], body[ok], head[ok]

    n = len(s)
    lines = SolverLines(raw=raw, offset=s, kind=np.full(n, -1, np.int64), tid=tid,
                        usec=usec, iteration=np.full(n, -1, np.int64), net=np.zeros(n, np.int64),
                        output=np.zeros(n, np.int64), name=np.full(n, "", object),
                        value=np.full(n, "", object), tail=np.full(n, -1, np.int64),
                        tail_end=np.full(n, -1, np.int64))
    _read_outputs(b, raw, lines, body, e, head)
    _read_iterations(b, raw, lines, body, e, head)
    _read_events(raw, lines, body, e, head)
    sel = np.flatnonzero(lines.kind >= 0)
    arrays = list(SolverLines.__dataclass_fields__)[1:-1]
    rejected = int(rowlike.sum()) - int((lines.kind[sel] != EVENT).sum())
    return SolverLines(raw, *(getattr(lines, f)[sel] for f in arrays), rejected=rejected)


def _read_outputs(b, raw, lines, body, e, head):
    """`    Train net output #K: NAME = VALUE`, with ` (* W = Z loss)` for a loss. Names
    and values hold no spaces (as parse_log.py reads them)."""
    train = head == _word("    Trai")[0]
    rows = np.flatnonzero(train | (head == _word("    Test")[0]))
    train, at, end = train[rows], body[rows], e[rows]
    # the first 8 bytes are known; the rest from byte 8 on: "n net output #" / " net output #"
    index_at = at + np.where(train, 22, 21)
    prefix_ok = b.starts_with(index_at - 13, b" net output #") \
        & (train == (b.buf[at + 8] == LETTER_N))
    index, index_len = b.digits(index_at)
    name_at = index_at + index_len + 2
    name, name_end = _names(b, raw, train * (int(index.max(initial=0)) + 1) + index, name_at)
    value_at = name_end + 3
    value_end = b.token_end(value_at)
    # " (* W = Z loss)": its inside is read only when the plot needs Z (SolverLines.weighted)
    weighted = b.starts_with(value_end, b" (* ") & b.starts_with(end - 6, b" loss)") \
        & (end - value_end >= 15)
    ok = prefix_ok & (index_len > 0) & b.starts_with(name_at - 2, b": ") \
        & (name_end > name_at) & b.starts_with(name_end, b" = ") & (value_end > value_at) \
        & ((value_end == end) | weighted)
    values, numeric = _numbers(b, raw, value_at[ok], value_end[ok])
    ok[ok] = numeric
    rows, train, index = rows[ok], train[ok], index[ok]
    lines.kind[rows] = np.where(train, TRAIN_OUT, TEST_OUT)
    lines.output[rows] = index
    lines.name[rows] = name[ok]
    lines.value[rows] = _kept(values, numeric)
    w = weighted[ok]
    lines.tail[rows[w]] = value_end[ok][w]
    lines.tail_end[rows[w]] = end[ok][w]


def _read_iterations(b, raw, lines, body, e, head):
    """`Iteration N (...), loss = L`, `Iteration N, loss = L`, `Iteration N, lr = R`,
    `Iteration N, Testing net (#T)`."""
    rows = np.flatnonzero(head == _word("Iteratio")[0])
    at, end = body[rows], e[rows]
    number, count = b.digits(at + 10, 18)
    after = at + 10 + count
    named = b.starts_with(at + 8, b"n ") & (count > 0)
    value_at = b.last_token(end)
    has_value = named & (value_at > after) & (value_at < end)
    display = has_value & b.starts_with(value_at - 7, b"loss = ") \
        & (b.starts_with(after, b" (") | (value_at == after + 9))
    lr = has_value & b.starts_with(after, b", lr = ") & (value_at == after + 7)
    testing = named & b.starts_with(after, b", Testing net (#")
    net, net_len = b.digits(after[testing] + 16)
    well_formed = (net_len > 0) & (b.buf[after[testing] + 16 + net_len] == CLOSE_PAREN)
    net = net[well_formed]
    testing[testing] = well_formed
    valued = display | lr
    values, numeric = _numbers(b, raw, value_at[valued], end[valued])
    display[valued] &= numeric
    lr[valued] &= numeric
    for mask, code in ((display, DISPLAY), (lr, LR), (testing, TESTING)):
        lines.kind[rows[mask]] = code
    found = display | lr | testing
    lines.iteration[rows[found]] = number[found]
    lines.net[rows[testing]] = net
    lines.value[rows[display | lr]] = _kept(values, numeric)


def _read_events(raw, lines, body, e, head):
    """The solver's events; few lines, so each is read on its own."""
    prefixes = np.array([_word(w + " ")[0] for w in EVENTS])
    for j in np.flatnonzero(np.isin(head, prefixes)).tolist():
        message = _cut(raw, body[j], e[j])
        for word in EVENTS:
            if message.startswith(word):
                lines.kind[j] = EVENT
                lines.name[j] = word
                lines.value[j] = message[len(word):].strip()
                break


def _cut(raw, start, end):
    return raw[start:end].decode("utf-8", errors="replace")


def _numbers(b, raw, starts, ends):
    """The texts of raw[starts[i]:ends[i]], spans that hold no byte <= space, and whether
    each is made of the bytes of a number. A span shorter than 16 bytes (as Caffe's numbers
    are) is read as two words padded with spaces; all are decoded at once and split, several
    times faster than cutting them one by one."""
    if not len(starts):
        return [], np.zeros(0, bool)
    lengths = ends - starts
    if lengths.min() >= 1 and lengths.max() <= 15:
        words = np.empty((len(starts), 2), "<u8")
        for half in (0, 1):
            mask = _BYTE_MASKS[np.clip(lengths - 8 * half, 0, 8)]
            words[:, half] = (b.words(starts + 8 * half) & mask) | (_SPACES & ~mask)
        numeric = _NUMBER_BYTES[words.view(np.uint8)].all(axis=1)
        joined = words.tobytes()
        if joined.isascii():
            parts = joined.decode("ascii").split()
            if len(parts) == len(starts):
                return parts, numeric
    texts = [_cut(raw, x, y) for x, y in zip(starts.tolist(), ends.tolist())]
    return texts, np.array([len(t) < 16 and _NUMBER_BYTES[list(t.encode())].all()
                            for t in texts], bool)


def _kept(texts, keep):
    return texts if keep.all() else np.array(texts, object)[keep]


def _names(b, raw, key, starts):
    """The name (a token) at each position, and where it ends. The rows of one net print the
    same name for the same output number (`key`): each row is compared in bulk with the first
    row of its key, name and the space after it, and only those first rows are cut out."""
    names = np.empty(len(starts), object)
    ends = np.array(starts)
    left = np.arange(len(starts))
    for _ in range(8):                     # rounds: distinct names per key, then one by one
        if not len(left):
            break
        where = key[left] if key[left].max() <= 65535 \
            else np.unique(key[left], return_inverse=True)[1]   # small keys index directly
        first = np.full(int(where.max()) + 1, -1, np.int64)
        first[where[::-1]] = left[::-1]                         # the last write wins
        refs = np.flatnonzero(first >= 0)
        length = np.zeros(len(first), np.int64)
        length[refs] = b.token_end(starts[first[refs]], _NAME) - starts[first[refs]]
        spelled = np.empty(len(first), object)
        spelled[refs] = [_cut(raw, starts[r], starts[r] + length[k])
                         for k, r in zip(refs.tolist(), first[refs].tolist())]
        ref_of, size = first[where], length[where]
        same = size > 0
        for at in range(0, int(size.max(initial=0)) + 1, 8):
            mask = _BYTE_MASKS[np.clip(size + 1 - at, 0, 8)]
            same &= ((b.words(starts[left] + at) ^ b.words(starts[ref_of] + at)) & mask) == 0
        names[left[same]] = spelled[where[same]]
        ends[left[same]] += size[same]
        left = left[~same]
    ends[left] = b.token_end(starts[left], _NAME)
    names[left] = [_cut(raw, x, y) for x, y in zip(starts[left].tolist(), ends[left].tolist())]
    return names, ends


def _usec(b, t, stamp, datelen):
    """Microseconds of each time stamp hh:mm:ss.uuuuuu; -1 where it is not one."""
    clock = b.words(t) & _CLOCK_DIGITS               # "hh:mm:ss" as "hh0mm0ss"
    hhmmss = np.where(_nondigits(clock) & _CLOCK_DIGITS & _HIGH == 0,
                      _eight_digits(clock, 8), -1)
    micro = b.fixed_digits(t + 9, 6)
    days = _day_numbers(stamp, datelen)
    seconds = hhmmss // 1_000_000 * 3600 + hhmmss // 1000 % 100 * 60 + hhmmss % 100
    usec = (days * 86400 + seconds) * 1_000_000 + micro
    return np.where((days >= 0) & (hhmmss >= 0) & (micro >= 0), usec, -1)


def _day_numbers(stamp, datelen):
    """Day numbers of MMDD / YYYYMMDD stamps. glog's MMDD has no year: it advances when the
    date goes back by more than half a year (Dec 31 -> Jan 1), while a line a little out of
    order (another process's) keeps its year. A log is taken to start in a non-leap year
    unless it has a Feb 29 stamp."""
    days = np.zeros(len(stamp), np.int64)
    if not len(stamp):
        return days
    bounds = np.concatenate(([0], np.flatnonzero(np.diff(stamp) != 0) + 1, [len(stamp)]))
    short = datelen == 4
    year = 2000 if bool(((stamp == 229) & short).any()) else 2001
    latest = None
    for a, z in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        value = int(stamp[a])
        try:
            if not short[a]:
                days[a:z] = date(value // 10000, value // 100 % 100, value % 100).toordinal()
                continue
            number = date(year, value // 100, value % 100).toordinal()
            if latest is not None and number < latest - 180:
                year += 1
                number = date(year, value // 100, value % 100).toordinal()
            elif latest is not None and number > latest + 180:
                number = date(year - 1, value // 100, value % 100).toordinal()
        except ValueError:
            days[a:z] = -1
            continue
        latest = number if latest is None else max(latest, number)
        days[a:z] = number
    return days
