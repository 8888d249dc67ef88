"""The input pipeline of Caffe's prefetching data layers (base_data_layer.cpp; Data and
ImageData): a layer's records (sepnets.engine.records) decoded and transformed (one
DataTransformer: sepnets.engine.transform) ahead of use, in batches.

    the stream    the layer's record source, read in order on the prefetch thread: for
                  Data, Caffe's cursor and offset_, every record of the database in key
                  order, round and round; with several ranks, a TRAIN layer keeps the
                  records whose position in the stream is its rank modulo the world size
                  (DataLayer::Skip, data_layer.cpp:59-78), so rank r's item j of batch b is
                  stream record (b*B + j)*N + r, and the ranks together read what one
                  process reads at batch N*B; TEST layers keep every record (only rank 0
                  tests). For ImageData, the list's lines (every rank the whole list, as
                  Caffe's ImageDataLayer, which has no Skip).
    the draws     three random integers per record from the layer's generator (seeded with
                  the solver's random_seed + rank), drawn in stream order on the reading
                  thread: the batches depend on the seed, never on the number of workers.
    the workers   decoding (the source's decoder: OpenCV; unencoded records read from their
                  bytes with numpy) and, on the CPU, the whole transform run in worker
                  processes (torch's DataLoader, one batch each, results in order), which
                  write each batch into a shared-memory slot the layer then reads in place
                  (channels-last, the CPU's layout); on a GPU the workers deliver the uint8
                  (or float) records, which are copied to the device and cropped, mirrored,
                  mean-subtracted and scaled there.
    prefetch      a thread keeps `data_param.prefetch` batches ready (Caffe's prefetch
                  thread) and feeds the workers.
    staging       optionally (-stage_data, SEPNETS_STAGE_DATA=1) a TRAIN Data layer's
                  database is decoded once into device memory and batches are formed there:
                  the same batches (ImageData layers, reshuffled each pass, are read).

Worker count: -data_workers N (SEPNETS_DATA_WORKERS=N); by default one per core available
to this process, shared among the ranks on this machine; 0 decodes on the prefetch thread.
Shared memory: (2 x workers + prefetch + 2) batch slots per layer.
`database_batches` gives every record of a Data layer's database once, transformed as its
TEST phase does (for programs that evaluate outside a net: the demo's ONNX accuracy).
"""
import os
import queue
import threading
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from sepnets.caffe import glog
from sepnets.engine import device as devices
from sepnets.engine import distributed, memory
from sepnets.engine.records import DatumSource
from sepnets.engine.transform import Transform, chw
from sepnets.errors import CaffeFileError, UserError

WORKERS_ENV = "SEPNETS_DATA_WORKERS"
STAGE_ENV = "SEPNETS_STAGE_DATA"
DRAW_LIMIT = np.iinfo(np.int64).max


@dataclass
class Options:
    """The engine's data options (the command line's -data_workers, -stage_data)."""
    workers: int = None  # None: SEPNETS_DATA_WORKERS, else one per available core
    stage: bool = None   # None: SEPNETS_STAGE_DATA


OPTIONS = Options()


def configure(workers=None, stage=None):
    OPTIONS.workers, OPTIONS.stage = workers, stage


def worker_count():
    if OPTIONS.workers is not None:
        count = OPTIONS.workers
    elif os.environ.get(WORKERS_ENV, "") != "":
        try:
            count = int(os.environ[WORKERS_ENV])
        except ValueError:
            raise UserError(f"{WORKERS_ENV}={os.environ[WORKERS_ENV]}: give a number of worker "
                            "processes") from None
    else:
        return max(1, devices.available_cores() // distributed.current().local_size)
    if count < 0:
        raise UserError(f"data workers: {count}: give 0 (decode on the prefetch thread) or more")
    return count


def staging_requested():
    if OPTIONS.stage is not None:
        return OPTIONS.stage
    return os.environ.get(STAGE_ENV, "0") not in ("", "0", "false", "no")


class _Failure:
    """A worker's one-line error, re-raised by the consumer (exceptions with their own
    constructors do not survive pickling), with the slot it was given."""

    def __init__(self, message, slot=None):
        self.message, self.slot = message, slot


class Batch(NamedTuple):
    """What a worker hands back: its values in shared slot `slot` (or in `values`), the
    labels, and, for a device to finish, the placements (small numpy arrays: pickled by
    value; a tensor would cost a shared-memory segment). finished: the values are the
    layer's float32 output (N x crop x crop x C); otherwise the records (N x H x W x C)."""
    slot: object
    values: object
    labels: np.ndarray
    offsets: object
    mirror: object
    finished: bool


class Slots:
    """Batch buffers in shared memory, made once, that worker processes write into and the
    layer reads in place (torch's DataLoader would make a shared-memory segment per batch:
    13 ms for a 19 MB ImageNet batch). A slot goes back when the next batch is taken."""

    def __init__(self, count, shape, dtype):
        self.buffers = [torch.empty(shape, dtype=dtype).share_memory_() for _ in range(count)]
        self.free = queue.Queue()
        for i in range(count):
            self.free.put(i)

    def take(self, stop):
        while not stop.is_set():
            try:
                return self.free.get(timeout=0.1)
            except queue.Empty:
                continue
        return None

    def give(self, slot):
        if slot is not None:
            self.free.put(slot)

    def __getstate__(self):  # a worker started by spawn gets the buffers, not the queue
        return {"buffers": self.buffers, "free": None}


def torch_dtype(array):
    """The torch dtype of a numpy array's values (from an empty array of them: a record read
    in place from its database is not writable, and torch warns when it wraps one)."""
    return torch.from_numpy(np.empty(0, array.dtype)).dtype


def layer_name(layer):
    return f"layer '{layer.name}' ({layer.type})"


def draws(rng, count):
    """The random integers of `count` records, three each (the rule: sepnets.engine.transform)."""
    return rng.integers(0, DRAW_LIMIT, (count, 3), dtype=np.int64)


def decode_records(decode, values):
    """A source's values -> ([H x W x C arrays], float32 labels), by its decoder."""
    images, labels = [], np.empty(len(values), np.float32)
    for i, value in enumerate(values):
        image, labels[i] = decode(value)
        images.append(image)
    return images, labels


class BatchDecoder:
    """One batch's work, (slot, [(value, draws) per record]) -> a Batch: the layer's output
    (finish, on the CPU) or the records for Transform.finish on the device."""

    def __init__(self, decode, transform, shape, finish, slots=None):
        self.decode, self.transform, self.shape, self.finish = decode, transform, shape, finish
        self.source = decode.source
        self.slots = slots

    def __call__(self, work):
        slot, items = work
        try:
            return self._batch(slot, items)
        except UserError as err:
            return _Failure(str(err), slot)

    def _batch(self, slot, items):
        t = self.transform
        images, labels = decode_records(self.decode, [value for value, _ in items])
        shapes = [chw(image.shape) for image in images]
        for shape in shapes:
            if t.output_shape(shape) != self.shape[1:]:
                raise CaffeFileError(self.source, f"record of shape {shape} does not fit the "
                                                  f"batch's {self.shape[1:]} (the engine keeps a "
                                                  "data layer's shape: resize or crop the "
                                                  "inputs to one size)")
        offsets, mirror = t.placements(np.stack([d for _, d in items]), shapes)
        buffer = self.slots.buffers[slot] if slot is not None else None
        if self.finish:
            _, channels, height, width = self.shape
            out = buffer if buffer is not None else torch.empty((len(items), height, width,
                                                                 channels))
            view = out.numpy()
            for i, image in enumerate(images):
                t.finish_into(view[i], image, offsets[i], mirror[i])
            return Batch(slot, None if buffer is not None else out, labels, None, None, True)
        if buffer is not None and all(image.shape == buffer.shape[1:] for image in images):
            view = buffer.numpy()
            for i, image in enumerate(images):
                view[i] = image
            return Batch(slot, None, labels, offsets, mirror, False)
        records, offsets, mirror = t.stack(images, offsets, mirror)
        return Batch(slot, torch.from_numpy(records), labels, offsets, mirror, False)


class RecordDecoder:
    """Values -> (N x H x W x C records, labels), untransformed (for staging)."""

    def __init__(self, decode):
        self.decode, self.source = decode, decode.source

    def __call__(self, values):
        try:
            images, labels = decode_records(self.decode, values)
            if any(a.shape != images[0].shape for a in images):
                raise UserError(f"{self.source}: -stage_data needs records of one size")
            return torch.from_numpy(np.stack(images)), torch.from_numpy(labels)
        except UserError as err:
            return _Failure(str(err))


class _Work:
    """The DataLoader's dataset: its 'indices' are whole batches of work."""

    def __init__(self, decoder):
        self.decoder = decoder

    def __getitems__(self, work):
        return self.decoder(work)

    def __getitem__(self, work):
        return self.decoder(work)


def _as_is(batch):
    return batch


IN_FLIGHT = 2  # batches each worker process has queued (DataLoader's prefetch_factor)


def decoded(decoder, work, workers):
    """Batches of `work` (an iterable of work items) through `decoder`, in order: on
    `workers` processes (torch's DataLoader), or in this thread for 0."""
    if not workers:
        yield from map(decoder, work)
        return
    from torch.utils.data import DataLoader
    loader = DataLoader(_Work(decoder), batch_sampler=work, num_workers=workers,
                        collate_fn=_as_is, prefetch_factor=IN_FLIGHT)
    iterator = iter(loader)
    try:
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except RuntimeError as err:  # a worker died (killed, out of memory)
                raise UserError(f"{decoder.source}: a data worker process failed: "
                                f"{str(err).splitlines()[0]}") from None
            yield batch
    finally:
        iterator._shutdown_workers()


class BatchLoader:
    """A prefetching layer's batches from its record source `records` (one of
    sepnets.engine.records), (data, labels) tensors on the net's device, made on a background
    thread `prefetch` batches ahead (data in channels-last memory order); `rng` draws the
    transform's random choices."""

    def __init__(self, records, layer, batch_size, train, rng, device, finish_in_workers=None):
        self.where = layer_name(layer)
        self.batch_size = batch_size
        if self.batch_size <= 0:
            raise UserError(f"{self.where}: batch_size must be positive")
        self.records, self.device, self.rng = records, torch.device(device), rng
        self.workers = worker_count()
        first = records.first
        self.transform = Transform(layer.transform_param, train, chw(first.shape), self.where)
        self.shape = (self.batch_size,) + self.transform.output_shape(chw(first.shape))
        if finish_in_workers is None:  # on a GPU the device transforms (uint8 copied there)
            finish_in_workers = self.device.type == "cpu"
        depth = max(1, layer.data_param.prefetch)  # every prefetching layer's (base_data_layer.cpp:39)
        # the batches held at once: the queue's (at most depth) or the shared slots (all made
        # here), each at most a float32 batch
        held = IN_FLIGHT * self.workers + depth + 2 if self.workers else depth
        memory.check_buffers(self.where, f"data_param.prefetch {layer.data_param.prefetch}", held,
                             4 * int(np.prod(self.shape)))
        self.slots = None
        if self.workers:
            n, channels, height, width = self.shape
            shape, dtype = (((n, height, width, channels), torch.float32) if finish_in_workers
                            else ((n,) + first.shape, torch_dtype(first)))
            try:
                self.slots = Slots(held, shape, dtype)
            except RuntimeError as err:  # torch: no shared memory or file descriptors left
                raise UserError(f"{self.where}: cannot make {held:,} shared-memory batch buffers "
                                f"(data_param.prefetch {depth}, {self.workers} workers): "
                                f"{str(err).strip().splitlines()[0]}") from None
        self.decoder = BatchDecoder(records.decode, self.transform, self.shape, finish_in_workers,
                                    self.slots)
        self.queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = None
        self.held = None  # the slot of the batch the layer last returned

    def draws(self):
        return draws(self.rng, self.batch_size)

    def _work(self):
        while not self.stop.is_set():
            slot = self.slots.take(self.stop) if self.slots else None
            if self.slots and slot is None:
                return
            yield slot, [(self.records.next(), d) for d in self.draws()]

    def _run(self):
        try:
            for batch in decoded(self.decoder, self._work(), self.workers):
                if self.stop.is_set():
                    break
                self._put(batch)
        except BaseException as err:  # handed to the consumer, which raises it
            self._put(err)
        finally:
            self.records.close()

    def _put(self, item):
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def next(self):
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name=f"prefetch {self.where}",
                                           daemon=True)
            self.thread.start()
        item = self.queue.get()
        distributed.current().tick()
        if self.slots:
            self.slots.give(self.held)  # the previous batch is no longer read
            self.held = getattr(item, "slot", None)
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, _Failure):
            raise UserError(item.message)
        values = item.values if item.values is not None else self.slots.buffers[item.slot]
        values = values.permute(0, 3, 1, 2).to(self.device, non_blocking=True)  # N, C, H, W
        labels = torch.from_numpy(item.labels).to(self.device, non_blocking=True)
        if not item.finished:
            values = self.transform.finish(values, item.offsets, item.mirror)
        return values, labels

    def close(self):
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        else:
            self.records.close()


def chunks(values, size):
    """Lists of `size` consecutive items of the iterable `values` (the last one shorter)."""
    values = iter(values)
    return iter(lambda: [v for _, v in zip(range(size), values)], [])


class StagedBatches:
    """A TRAIN Data layer's database decoded once into device memory (-stage_data): batches
    are gathered and transformed there, in the stream's order and with the same draws as
    BatchLoader's, so they are the same batches."""

    def __init__(self, loader):
        self.where, self.rng, self.device = loader.where, loader.rng, loader.device
        self.batch_size, self.shape, self.transform = loader.batch_size, loader.shape, loader.transform
        self.rank, self.size = loader.records.rank, loader.records.size
        self.draws = loader.draws
        self.records, self.labels = self._stage(loader.records)
        self.taken = 0  # records this rank has taken from the stream

    def _stage(self, source):
        count = sum(1 for _ in source.every_value())
        first = source.first
        need = count * first.nbytes
        room = device_room(self.device)
        if need > room // 2:
            raise UserError(f"{self.where}: -stage_data: the database's {count} records take "
                            f"{need / 2**20:.0f} MiB, more than half of the {room / 2**20:.0f} "
                            f"MiB free on {self.device}")
        records = torch.empty((count,) + first.shape, dtype=torch_dtype(first),
                              device=self.device)
        labels = torch.empty(count, dtype=torch.float32, device=self.device)
        done = 0
        for part in decoded(RecordDecoder(source.decode), chunks(source.every_value(), 256),
                            worker_count()):
            if isinstance(part, _Failure):
                raise UserError(part.message)
            if tuple(part[0].shape[1:]) != first.shape:
                raise UserError(f"{source.source}: -stage_data needs records of one size")
            records[done:done + len(part[0])] = part[0].to(self.device)
            labels[done:done + len(part[0])] = part[1].to(self.device)
            done += len(part[0])
        glog.info(None, f"{self.where}: staged {count} records ({need / 2**20:.1f} MiB) in "
                        f"{self.device.type} memory")
        return records, labels

    def next(self):
        count = len(self.records)
        stream = (self.taken + np.arange(self.batch_size)) * self.size + self.rank
        previous = (self.taken - 1) * self.size + self.rank  # the last offset read before
        for _ in range(int(stream[-1]) // count - max(previous, 0) // count):
            glog.info("data_layer.cpp:73", "Restarting data prefetching from start.")
        self.taken += self.batch_size
        index = torch.from_numpy(stream % count).to(self.device)
        offsets, mirror = self.transform.placements(
            self.draws(), [chw(self.records.shape[1:])] * self.batch_size)
        distributed.current().tick()
        return (self.transform.finish(self.records[index].permute(0, 3, 1, 2), offsets, mirror),
                self.labels[index])

    def close(self):
        self.records = self.labels = None


def device_room(device):
    """Bytes free on `device` (GPU memory, or the machine's available memory)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def batches(records, layer, batch_size, train, rng, device):
    """A prefetching layer's batch source over its record source `records`: staged in device
    memory when asked (a TRAIN layer with a fixed order of records), else read."""
    loader = BatchLoader(records, layer, batch_size, train, rng, device)
    if train and staging_requested():
        if not records.STAGEABLE:
            glog.info(None, f"{loader.where}: -stage_data stages Data layers only; this layer's "
                            "records are read")
            return loader
        staged = StagedBatches(loader)
        loader.close()
        return staged
    return loader


def database_batches(layer, size=100, seed=0):
    """Every record of a Data layer's database once, in key order, transformed as its TEST
    phase does (the same Transform as the layer's; a TEST mirror draws from a generator
    seeded `seed`), in batches of `size` (the last one shorter): numpy (N x C x H x W float32
    data, N labels) pairs, decoded on this thread. For programs that evaluate a whole test
    set outside a net (the demo's ONNX accuracy)."""
    records, rng = DatumSource(layer), np.random.default_rng(seed)
    shape = chw(records.first.shape)
    transform = Transform(layer.transform_param, False, shape, layer_name(layer))
    decoder = BatchDecoder(records.decode, transform, (size,) + transform.output_shape(shape), True)
    for values in chunks(records.every_value(), size):
        batch = decoder((None, list(zip(values, draws(rng, len(values))))))
        if isinstance(batch, _Failure):
            raise UserError(batch.message)
        yield np.ascontiguousarray(batch.values.permute(0, 3, 1, 2).numpy()), batch.labels
