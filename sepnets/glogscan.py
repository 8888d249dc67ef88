"""Finds the lines of Caffe's solver in a glog text in bulk: numpy over the bytes instead of
a regular expression per line (Python's `re` costs ~0.3 us a match, too slow for long
logs), and the texts of fields cut out together rather than one slice at a time.

A glog line: `I0418 16:30:46.830205  2203 solver.cpp:219] MESSAGE` (severity, MMDD or newer
glog's YYYYMMDD, time to the microsecond, thread id, source). The messages kept are listed
in caffelog's docstring: Train/Test net output lines, "Iteration N ..." lines (display, lr,
Testing net) and the solver's events. Every other line is skipped.
"""
from dataclasses import dataclass
from datetime import date

import numpy as np

TRAIN_OUT, TEST_OUT, DISPLAY, LR, TESTING, EVENT = range(6)
EVENTS = ("Solving", "Resuming from", "Restoring previous solver status from",
          "Optimization Done", "Optimization stopped early", "Snapshotting solver state to",
          "Initializing solver from parameters")
_PAD = 320                # zero bytes after the text: fixed-width reads never run past it
_NUMBER = 40              # a number Caffe prints ("-1.17549e-38") is far shorter
_NAME = 256               # the longest output name read


@dataclass
class SolverLines:
    """The solver's lines in file order, one array entry each."""
    text: str                   # the whole log, one character per byte (latin-1)
    offset: np.ndarray          # where the line starts in `text`
    kind: np.ndarray            # TRAIN_OUT ... EVENT
    tid: np.ndarray             # glog's thread id
    usec: np.ndarray            # time stamp in microseconds (see _day_numbers for the year)
    iteration: np.ndarray       # DISPLAY, LR, TESTING: N; -1 otherwise
    net: np.ndarray             # TESTING: the test net's number
    output: np.ndarray          # outputs: K of "output #K"
    name: np.ndarray            # outputs: the output's name; EVENT: which of EVENTS
    value: np.ndarray           # outputs: value; DISPLAY: loss; LR: rate; EVENT: the rest
    weight_at: np.ndarray       # outputs printed with "(* W = Z loss)": where Z starts; else -1
    weight_end: np.ndarray

    def weighted(self, idx):
        """The Z texts of output lines `idx` that have one."""
        return [self.text[a:b] for a, b in zip(self.weight_at[idx].tolist(),
                                               self.weight_end[idx].tolist())]


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


def _at_most(x, n):
    """Bytes <= n (n < 0x80)."""
    return ~(((x & _LOW7) + _ONES * np.uint64(0x7F - n)) | x) & _HIGH


def _nondigits(x):
    """Bytes that are not '0'..'9'."""
    return _at_most(x, 0x2F) | (((x & _LOW7) + _ONES * np.uint64(0x7F - 0x39)) | x) & _HIGH


def _not_equal(x, byte):
    z = x ^ (_ONES * np.uint64(byte))
    return (((z & _LOW7) + _LOW7) | z) & _HIGH


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
    """The text as zero-padded little-endian uint64 words, read at many positions at once."""

    def __init__(self, raw):
        self.n = len(raw)
        size = -(-(self.n + _PAD) // 8) * 8
        self.buf = np.zeros(size, np.uint8)
        self.buf[:self.n] = np.frombuffer(raw, np.uint8)
        self.aligned = self.buf.view("<u8")

    def words(self, pos):
        """The 8 bytes at each position, as one uint64 each (two aligned words shifted)."""
        shift = ((pos & 7) << 3).astype(np.uint64)
        at = pos >> 3
        return (self.aligned[at] >> shift) | (self.aligned[at + 1] << (np.uint64(64) - shift))

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
    text = raw.decode("latin-1")            # one character per byte: offsets agree
    ends = b.positions(10)
    brackets = b.positions(93)

    # candidates: "] " followed by a message the solver prints, told by its first 8 bytes
    head = b.words(brackets + 2)
    wanted = [_word(w)[0] for w in ("    Trai", "    Test", "Iteratio")] \
        + [_word(w + " ")[0] for w in EVENTS]
    cand = np.flatnonzero(np.isin(head, np.array(wanted))
                          & (b.buf[brackets + 1] == 32))
    bracket = brackets[cand]
    line = np.searchsorted(ends, bracket)
    s = np.where(line > 0, ends[np.maximum(line - 1, 0)] + 1, 0)
    e = ends[line]
    e = e - (b.buf[np.maximum(e - 1, 0)] == 13)                      # a CRLF log

    # glog's prefix: severity, date, time, thread id, and this "] " the first after them
    severity = b.buf[s]
    datelen = np.where(b.buf[s + 5] == 32, 4, np.where(b.buf[s + 9] == 32, 8, 0))
    t = s + datelen + 2
    ok = ((severity == 73) | (severity == 87) | (severity == 69) | (severity == 70)) \
        & (datelen > 0) & (b.buf[t + 2] == 58) & (b.buf[t + 5] == 58) & (b.buf[t + 8] == 46) \
        & (b.buf[t + 15] == 32)
    stamp = b.fixed_digits(s + 1, 4)
    if (datelen == 8).any():
        stamp = np.where(datelen == 4, stamp, b.fixed_digits(s + 1, 8))
    # the thread id, right-aligned in 5 columns (wider when it has more digits)
    tid_end = t + 21
    wide = np.flatnonzero(b.buf[tid_end] != 32)
    tid_end[wide] = b.token_end(tid_end[wide], 8)
    field = b.words(tid_end - 8) & ~_BYTE_MASKS[np.maximum(8 - (tid_end - t - 16), 0)]
    tid = _eight_digits(field, 8)                       # the spaces before it count 0
    tid_ok = (_nondigits(b.words(tid_end - 1)) & _BYTE_MASKS[1] == 0) \
        & (b.buf[tid_end] == 32) & (tid_end - t - 16 <= 8)
    first = brackets[np.minimum(np.searchsorted(brackets, tid_end), len(brackets) - 1)]
    ok &= (stamp >= 0) & tid_ok & (first == bracket)
    s, e, t, datelen, stamp, tid, body = s[ok], e[ok], t[ok], datelen[ok], stamp[ok], tid[ok], \
        bracket[ok] + 2
    usec = _usec(b, t, stamp, datelen)
    ok = usec >= 0
    s, e, usec, tid, body = s[ok], e[ok], usec[ok], tid[ok], body[ok]

    n = len(s)
    lines = SolverLines(text=text, offset=s, kind=np.full(n, -1, np.int64), tid=tid,
                        usec=usec, iteration=np.full(n, -1, np.int64), net=np.zeros(n, np.int64),
                        output=np.zeros(n, np.int64), name=np.full(n, "", object),
                        value=np.full(n, "", object), weight_at=np.full(n, -1, np.int64),
                        weight_end=np.full(n, -1, np.int64))
    head = b.words(body)
    _read_outputs(b, text, lines, body, e, head)
    _read_iterations(b, text, lines, body, e, head)
    _read_events(text, lines, body, e, head)
    sel = np.flatnonzero(lines.kind >= 0)
    arrays = list(SolverLines.__dataclass_fields__)[1:]
    return SolverLines(text, *(getattr(lines, f)[sel] for f in arrays))


def _read_outputs(b, text, lines, body, e, head):
    """`    Train net output #K: NAME = VALUE`, with ` (* W = Z loss)` for a loss. Names
    and values hold no spaces (as parse_log.py reads them)."""
    train = head == _word("    Trai")[0]
    rows = np.flatnonzero(train | (head == _word("    Test")[0]))
    train, at, end = train[rows], body[rows], e[rows]
    # the first 8 bytes are known; the rest from byte 8 on: "n net output #" / " net output #"
    index_at = at + np.where(train, 22, 21)
    prefix_ok = b.starts_with(index_at - 13, b" net output #") \
        & (train == (b.buf[at + 8] == 110))
    index, index_len = b.digits(index_at)
    name_at = index_at + index_len + 2
    name_end = b.token_end(name_at, _NAME)
    value_at = name_end + 3
    value_end = b.token_end(value_at)
    # " (* W = Z loss)"
    factor_end = b.token_end(value_end + 4)
    weight_at = factor_end + 3
    weight_end = b.token_end(weight_at)
    weighted = b.starts_with(value_end, b" (* ") & (factor_end > value_end + 4) \
        & b.starts_with(factor_end, b" = ") & (weight_end > weight_at) \
        & b.starts_with(weight_end, b" loss)") & (weight_end + 6 == end)
    ok = prefix_ok & (index_len > 0) & b.starts_with(name_at - 2, b": ") \
        & (name_end > name_at) & b.starts_with(name_end, b" = ") & (value_end > value_at) \
        & ((value_end == end) | weighted)
    rows, train, index = rows[ok], train[ok], index[ok]
    lines.kind[rows] = np.where(train, TRAIN_OUT, TEST_OUT)
    lines.output[rows] = index
    lines.name[rows] = _names(b, text, train * (int(index.max(initial=0)) + 1) + index,
                              name_at[ok], name_end[ok])
    lines.value[rows] = _texts(b, text, value_at[ok], value_end[ok])
    w = weighted[ok]
    lines.weight_at[rows[w]] = weight_at[ok][w]
    lines.weight_end[rows[w]] = weight_end[ok][w]


def _read_iterations(b, text, lines, body, e, head):
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
    net, net_len = b.digits(after + 16)
    testing = named & b.starts_with(after, b", Testing net (#") & (net_len > 0) \
        & (b.buf[after + 16 + net_len] == 41)
    for mask, code in ((display, DISPLAY), (lr, LR), (testing, TESTING)):
        lines.kind[rows[mask]] = code
    found = display | lr | testing
    lines.iteration[rows[found]] = number[found]
    lines.net[rows[testing]] = net[testing]
    valued = display | lr
    lines.value[rows[valued]] = _texts(b, text, value_at[valued], end[valued])


def _read_events(text, lines, body, e, head):
    """The solver's events; few lines, so each is read on its own."""
    prefixes = np.array([_word(w + " ")[0] for w in EVENTS])
    for j in np.flatnonzero(np.isin(head, prefixes)).tolist():
        message = text[body[j]:e[j]]
        for word in EVENTS:
            if message.startswith(word):
                lines.kind[j] = EVENT
                lines.name[j] = word
                lines.value[j] = message[len(word):].strip()
                break


def _texts(b, text, starts, ends):
    """text[starts[i]:ends[i]] for spans that hold no byte <= space and end just before one:
    cut out together and split, several times faster than slicing one by one."""
    if not len(starts):
        return []
    lengths = ends - starts + 1                         # with the separator after each span
    offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
    joined = b.buf[offsets + np.arange(len(offsets))].tobytes()
    if joined.isascii():
        parts = joined.decode("ascii").split()
        if len(parts) == len(starts):
            return parts
    return [text[x:y] for x, y in zip(starts.tolist(), ends.tolist())]


def _names(b, text, key, starts, ends):
    """Output names. The rows of one net print the same name for the same output number
    (`key`), so each is compared in bulk with the first one seen and sliced once."""
    names = np.empty(len(starts), object)
    lengths = ends - starts
    left = np.arange(len(starts))
    for _ in range(8):                          # rounds: distinct names per number, then slices
        if not len(left):
            break
        keys, where = np.unique(key[left], return_inverse=True) if key[left].max() > 65535 \
            else (None, key[left])                  # small keys index an array directly
        first = np.full(int(where.max()) + 1, -1, np.int64)
        first[where[::-1]] = left[::-1]                         # the last write wins
        ref_of = first[where]
        same = lengths[left] == lengths[ref_of]
        for at in range(0, int(lengths[left].max()), 8):
            mask = _BYTE_MASKS[np.clip(lengths[left] - at, 0, 8)]
            same &= ((b.words(starts[left] + at) ^ b.words(starts[ref_of] + at)) & mask) == 0
        spelled = np.empty(len(first), object)
        refs = np.flatnonzero(first >= 0)
        spelled[refs] = [text[starts[r]:ends[r]] for r in first[refs].tolist()]
        names[left[same]] = spelled[where[same]]
        left = left[~same]
    names[left] = [text[x:y] for x, y in zip(starts[left].tolist(), ends[left].tolist())]
    return names


def _usec(b, t, stamp, datelen):
    """Microseconds of each time stamp hh:mm:ss.uuuuuu; -1 where it is not one."""
    hours, minutes, seconds = (b.fixed_digits(t + k, 2) for k in (0, 3, 6))
    micro = b.fixed_digits(t + 9, 6)
    days = _day_numbers(stamp, datelen)
    usec = (((days * 24 + hours) * 60 + minutes) * 60 + seconds) * 1_000_000 + micro
    return np.where((days >= 0) & (hours >= 0) & (minutes >= 0) & (seconds >= 0)
                    & (micro >= 0), usec, -1)


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
