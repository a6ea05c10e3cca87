"""The split job: source files → worker processes → shards, manifests, summary.

The driver lists the input files, starts `--workers` processes (worker.py) and hands each one
file at a time. A worker streams its file through the native Splitter into a local spill file;
when it reports the file finished and checked, the driver alone appends the spill to the shard
objects and saves a checkpoint (state.py). So the destination only ever holds the output of
whole input files, exactly S shard objects per target are written whatever the worker count,
and a run killed at any moment resumes from its last checkpoint (`--resume`).

Balance: each worker deals its items round-robin over a target's shards from its own starting
shard (worker w of W starts at w*S/W) and carries on across its files, so per worker the shard
counts differ by at most one, and across the run by at most the number of workers.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import wait as mp_wait
from pathlib import Path
from typing import Any

from ddbshard import crashpoints
from ddbshard.compression import COMPRESSIONS
from ddbshard.config import SplitConfig, auto_shards, build_core_spec
from ddbshard.exceptions import ConfigError, DdbShardError, InputError, LocalDiskError
from ddbshard.io.localfs import LocalFS
from ddbshard.io.objects import OutputObject, hash_appends
from ddbshard.io.sink import Dest, open_dest
from ddbshard.io.source import Source, resolve_source
from ddbshard.progress import Progress
from ddbshard.split.manifests import (
    add_counts,
    exit_code,
    run_summary,
    shard_entry,
    target_manifest,
    write_target_files,
)
from ddbshard.split.nodes import Node, share_files, share_shards
from ddbshard.split.state import (
    STATE_DIR_NAME,
    VERSION,
    StateDir,
    default_state_dir,
    fingerprint,
    local_disk_error,
    sweep_stale_state_dirs,
)
from ddbshard.split.worker import REJECTS, FileResult, SpillFile, Task, peak_rss, worker_main

REJECTS_KEY = "_rejects/rejects.jsonl"
ON_BAD_FILE = ("stop", "skip")
# Bytes a commit appends before it hashes them (objects.hash_appends) and lets their pages go:
# the more streams hashed side by side the better, within bounded driver memory.
HASH_BATCH = 16 << 20
# S3 objects completed at once at the end of a run (PUTs and CompleteMultipartUpload calls):
# independent requests, so a run with thousands of shards does not wait on them one by one.
FINISH_CONCURRENCY = 16


@dataclass
class SplitResult:
    summary: dict[str, Any]
    exit_code: int
    dest: str
    target_dirs: list[str] = field(default_factory=list)
    # --resume found this job already finished (a kill after its last write): nothing was
    # done, and `summary` is the finished run's
    already_finished: bool = False


@dataclass(frozen=True)
class SplitOptions:
    s3_dest: str | None = None  # where import-table.json says the shards are (local dest)
    overwrite: bool = False
    resume: bool = False
    quiet: bool = False
    workers: int | None = None  # None: one per CPU
    on_bad_file: str = "stop"  # stop | skip
    max_rejects: int | None = None
    state_dir: Path | None = None
    node: Node | None = None  # one node of an AWS Batch array job (nodes.py)


class WorkerDied(DdbShardError):
    pass


def _shard_key(target: str, index: int, compression: str) -> str:
    return f"{target}/data/part-{index:05d}{COMPRESSIONS[compression].extension}"


def _owned_entries(config: SplitConfig) -> list[str]:
    return [t.name for t in config.targets] + ["_rejects", "_summary.json"]


def run_split(config: SplitConfig, options: SplitOptions | None = None) -> SplitResult:
    return _Run(config, options or SplitOptions()).run()


class _Run:
    def __init__(self, config: SplitConfig, options: SplitOptions) -> None:
        if options.on_bad_file not in ON_BAD_FILE:
            raise ConfigError(f"--on-bad-file {options.on_bad_file}: use stop or skip")
        if options.workers is not None and options.workers < 1:
            raise ConfigError(f"--workers {options.workers}: at least 1")
        self.config = config
        self.options = options
        self.source = resolve_source(config.source)
        self.node = options.node
        self._plan_share()
        self.spec = build_core_spec(config, self.shards)
        out = config.output
        state_dir = options.state_dir or default_state_dir(config.dest)
        if self.node is not None:
            state_dir = state_dir / f"node-{self.node.index:04d}"
        self.state = StateDir(state_dir)
        self.dest: Dest = open_dest(
            config.dest,
            self.state.path,
            sse=out.sse,
            sse_kms_key_id=out.sse_kms_key_id,
            expected_bucket_owner=out.expected_bucket_owner,
        )
        self.fingerprint = fingerprint(
            self.spec,
            [(f.name, f.md5_base64, f.item_count) for f in self.source.files],
            node=None if self.node is None else [self.node.index, self.node.count],
        )
        self.objects: dict[str, OutputObject] = {}
        self.ckpt: dict[str, Any] = {}
        self.skipped = 0  # files finished by an earlier run of a resumed job
        self.read_now = 0  # files finished by this run
        self.stopped: str | None = None
        self.worker_peak_rss = 0

    def _plan_share(self) -> None:
        """Which files this run reads and which shard numbers it writes (all, unless a node)."""
        total = shard_counts(self.config, self.source)
        files = self.source.files
        if self.node is None:
            self.file_share = list(range(len(files)))
            self.shards = total
            self.shard_base = dict.fromkeys(total, 0)
            return
        shares = share_files([f.size or 0 for f in files], self.node.count)
        weights = [sum(files[i].size or 0 for i in share) or len(share) for share in shares]
        self.file_share = shares[self.node.index]
        self.shards, self.shard_base = {}, {}
        for name, n in total.items():
            first, count = share_shards(n, weights)[self.node.index]
            # A node with no files still needs a valid spec; it writes no shard.
            self.shards[name], self.shard_base[name] = max(count, 1), first

    def _key(self, target: int, shard: int) -> str:
        name = self.config.targets[target].name
        return _shard_key(name, self.shard_base[name] + shard, self.config.output.compression)

    @property
    def rejects_key(self) -> str:
        if self.node is None:
            return REJECTS_KEY
        return f"_rejects/rejects-node-{self.node.index:04d}.jsonl"

    def _own_output(self) -> tuple[list[str], list[str]]:
        """(entries of dest this run owns, keys of single objects it owns): a node owns its
        shard numbers, its rejects and its folder under _nodes/, never the others'."""
        if self.node is None:
            return _owned_entries(self.config), []
        keys = [self.rejects_key, f"{self.node.dir}/summary.json"]
        for t, target in enumerate(self.config.targets):
            if self.shards[target.name] and self.file_share:
                keys += [self._key(t, s) for s in range(self.shards[target.name])]
        return [], keys

    # --- starting: fresh, overwrite or resume ---------------------------------------------

    def _start(self) -> dict[str, Any] | None:
        """Takes the destination (one run at a time), then starts fresh, over earlier output
        (--overwrite) or from the checkpoint (--resume). Returns the summary of an already
        finished run when --resume finds nothing left to do."""
        sweep_stale_state_dirs()
        self.state.lock(self.config.dest, self._dest_key())
        old = self.state.load()
        if self.options.resume and old is not None:
            if old.get("version") != VERSION or old.get("fingerprint") != self.fingerprint:
                raise ConfigError(
                    f"{self.config.dest}: cannot resume: the config or the source changed since "
                    "the interrupted run (use --overwrite to start over)"
                )
            if old.get("dest") not in (None, self._dest_key()):
                raise ConfigError(
                    f"{self.config.dest}: cannot resume: the checkpoint in {self.state.path} is "
                    f"that of a run writing to {old['dest']}"
                )
            self._check_done_files_unchanged(old)
            self.ckpt = old
            self.skipped = len(old["done"])
            for key, st in old["objects"].items():
                self.objects[key] = self.dest.open_object(key, st)
            self._each(self.objects.values(), lambda obj: obj.verify())
            self._remove_strays()
            self.ckpt["runs"] += 1
            self.state.save(self.ckpt)
            return None
        if self.node is None:
            existing = self.dest.existing_entries()
            if old is None and not self.dest.is_s3:
                # The state folder holding only this run's lock is not earlier output.
                existing = [e for e in existing if e != STATE_DIR_NAME]
        else:
            _, keys = self._own_output()
            existing = self.dest.existing_keys(keys)
            if old is not None:
                existing.append(str(self.state.path))
        if self.options.resume:
            finished = self._finished_summary(existing)
            if finished is not None:
                return finished
        if self.options.resume and existing:
            raise ConfigError(
                f"{self.config.dest}: nothing to resume (no checkpoint in {self.state.path}: "
                "the run finished with another config or source, or never started); pass "
                "--overwrite to start over"
            )
        if existing and not self.options.overwrite:
            raise ConfigError(
                f"{self.config.dest}: destination is not empty "
                f"({', '.join(sorted(existing)[:5])}); pass --overwrite to replace earlier "
                "output, or --resume to continue an interrupted run"
            )
        if existing:
            # The summary goes first: while it is there, --resume takes the earlier output
            # for a finished run of this job.
            self.dest.remove([self._summary_key])
        if old is not None:
            self.dest.abort_uploads(old.get("objects", {}))
        self.state.clear()
        targets = self.spec["targets"]
        self.ckpt = {
            "version": VERSION,
            "fingerprint": self.fingerprint,
            "dest": self._dest_key(),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "runs": 1,
            "done": {},
            "bad": [],
            "counts": {
                "read": 0,
                "written": 0,
                "unmatched": 0,
                "rejected": 0,
                "reject_records": {},
                "targets": {t["name"]: {"written": 0, "rejected": {}} for t in targets},
            },
            "shard_stats": [[[0, 0] for _ in range(t["shards"])] for t in targets],
            "bytes_in": 0,
            "bytes_uncompressed": 0,
            "objects": {},
            "worker_next": [],
        }
        # The checkpoint comes before the earlier output is cleared: killed while clearing,
        # --resume starts from it and removes what is left as strays.
        self.state.save(self.ckpt)
        if existing or self.node is not None:
            entries, keys = self._own_output()
            for entry in entries:
                self.dest.clear([entry])
                crashpoints.reached("clearing")
            self.dest.remove(keys)
        return None

    def _dest_key(self) -> str:
        """The destination as one string, whichever way it was spelled (and the node)."""
        dest = self.config.dest.rstrip("/")
        if not self.dest.is_s3:
            dest = os.path.abspath(dest.removeprefix("file://"))
        else:
            # The same bucket name behind another endpoint is another destination.
            endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
            dest = f"{dest}@{endpoint}" if endpoint else dest
        return dest if self.node is None else f"{dest}#node-{self.node.index}"

    def _check_done_files_unchanged(self, old: dict[str, Any]) -> None:
        """The files the interrupted run finished are not read again: their bytes must be the
        ones it read (the manifest MD5, or else size and mtime / ETag). A file it had not
        finished may have changed (a bad file fixed before --resume, as the stop asks)."""
        now = {f.name: f.version for f in self.source.files}
        for name, done in old["done"].items():
            if "version" in done and now.get(name) != done["version"]:
                raise ConfigError(
                    f"{self.config.dest}: cannot resume: the config or the source changed since "
                    f"the interrupted run ({name} was finished, then changed); use --overwrite "
                    "to start over"
                )

    @property
    def _summary_key(self) -> str:
        return "_summary.json" if self.node is None else f"{self.node.dir}/summary.json"

    def _finished_summary(self, existing: list[str]) -> dict[str, Any] | None:
        """The summary of a run of this very job that already finished (killed after its
        last write, before it could say so), or None."""
        if self.node is None and "_summary.json" not in existing:
            return None
        if self.node is not None and self._summary_key not in existing:
            return None
        try:
            summary: dict[str, Any] = self.dest.read_json(self._summary_key)
        except (OSError, ValueError, DdbShardError):
            return None
        if summary.get("fingerprint") != self.fingerprint:
            return None
        return summary

    def _remove_strays(self) -> None:
        """Objects and uploads under this run's output that the checkpoint does not know:
        a killed run made them after its last checkpoint, from input files that will be read
        again. Left alone, a local one would be appended to, and any would be an object that
        no manifest lists."""
        prefixes = [f"{t.name}/data/" for t in self.config.targets] + ["_rejects/"]
        owned = None if self.node is None else set(self._own_output()[1])
        known = self.ckpt["objects"]
        strays = [
            key
            for prefix in prefixes
            for key in self.dest.list_keys(prefix)
            if key not in known and (owned is None or key in owned)
        ]
        self.dest.remove(strays)
        self.dest.abort_stray_uploads(prefixes, owned, known)

    # --- the run ----------------------------------------------------------------------------

    def run(self) -> SplitResult:
        started = time.monotonic()
        mine = {self.source.files[i].name for i in self.file_share}
        missing = sorted(self.source.missing & mine)
        if missing and self.options.on_bad_file == "stop":
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise InputError(
                f"{self.source.root}: data file(s) listed in manifest-files.json are missing: "
                f"{', '.join(missing[:3])}{more} (--on-bad-file skip goes on without them)"
            )
        try:
            return self._run(started, missing)
        except OSError as e:
            # Input is read by the workers, which report its faults as bad files: an OSError
            # here is this machine's own (state, spill or a local dest).
            # An S3 dest's bytes wait in the local state folder; a local dest is written as is.
            where = e.filename or (self.state.path if self.dest.is_s3 else self.config.dest)
            raise local_disk_error(e, f"{where}: cannot write") from e
        finally:
            self.state.unlock()

    def _run(self, started: float, missing: list[str]) -> SplitResult:
        finished_summary = self._start()
        if finished_summary is not None:
            self.state.remove()
            return SplitResult(
                finished_summary,
                exit_code(self.config, finished_summary),
                self.config.dest,
                [self.dest.url_of(t.name) for t in self.config.targets]
                if self.node is None
                else [],
                already_finished=True,
            )
        # Files found bad by an earlier run are read again: the stop said "fix it, then
        # --resume", and one skipped may have been fixed since (if not, it is bad again).
        # Not once the objects are being completed: nothing may be appended to them then.
        if not self.ckpt.get("finishing"):
            self.ckpt["bad"] = []
        finished = set(self.ckpt["done"]) | {b["file"] for b in self.ckpt["bad"]}
        for name in missing:
            if name not in finished:
                self.ckpt["bad"].append(
                    {"file": name, "reason": "missing: listed in manifest-files.json, not found"}
                )
                finished.add(name)
        self.state.save(self.ckpt)
        todo = [i for i in self.file_share if self.source.files[i].name not in finished]
        progress = Progress(
            total_items=self.source.item_count,
            total_bytes=self.source.total_bytes,
            enabled=not self.options.quiet,
        )
        progress.items = self.ckpt["counts"]["read"]
        try:
            if todo:
                self._split_files(todo, progress)
            progress.close()
            return self._finish(time.monotonic() - started)
        except BaseException:
            for obj in self.objects.values():
                obj.abandon()
            raise
        finally:
            progress.close()

    def _workers(self, files: int) -> int:
        wanted = self.options.workers or os.cpu_count() or 1
        return max(1, min(wanted, files))

    def _split_files(self, todo: list[int], progress: Progress) -> None:
        spill_dir = self.state.fresh_spill_dir()
        n = self._workers(len(todo))
        nexts: list[list[int]] = self.ckpt["worker_next"]
        for w in range(len(nexts), n):
            nexts.append([w * t["shards"] // n for t in self.spec["targets"]])
        # Local files go to the workers as plain paths: they then start without fsspec.
        fs = None if isinstance(self.source.fs, LocalFS) else self.source.fs
        # A forked worker starts at once with everything imported; a spawned one starts a new
        # interpreter (0.1-0.2 CPU s each, and multiprocessing's resource tracker beside them).
        # But fork copies only the calling thread: with s3fs's event loop (or any other
        # thread) running, a lock it held would stay locked in the child. So fork only when
        # this process has no other thread.
        single = fs is None and threading.active_count() == 1
        ctx = (
            multiprocessing.get_context("fork") if single else multiprocessing.get_context("spawn")
        )
        conns: list[Any] = []
        procs: list[Any] = []
        for w in range(n):
            mine, theirs = ctx.Pipe(duplex=True)
            proc = ctx.Process(
                target=worker_main,
                args=(w, self.spec, fs, theirs),
                name=f"ddbshard-worker-{w}",
                daemon=True,
            )
            proc.start()
            theirs.close()
            conns.append(mine)
            procs.append(proc)
        pending = deque(todo)
        in_flight: dict[int, int] = {}  # worker -> file index
        in_flight_rejects = [0] * n
        committing = [0]  # rejects of the file being committed, not yet in the checkpoint

        def stop_at_limit() -> bool:
            # Checked before each file is started too: a resumed run may start at the limit.
            limit = self.options.max_rejects
            total = self.ckpt["counts"]["rejected"] + sum(in_flight_rejects) + committing[0]
            if limit is None or total < limit:
                return False
            if not self.stopped:
                self.stopped = (
                    f"max-rejects {limit} reached: the files being read were finished "
                    f"and no other file was started ({len(pending)} not read)"
                )
                pending.clear()
            return True

        def dispatch(w: int) -> None:
            if not pending or self.stopped or stop_at_limit():
                return
            i = pending.popleft()
            f = self.source.files[i]
            conns[w].send(
                Task(
                    index=i,
                    path=f.path,
                    name=f.name,
                    item_count=f.item_count,
                    md5_base64=f.md5_base64,
                    spill=str(spill_dir / f"{self.ckpt['runs']}-{i}.spill"),
                    next_shards=list(nexts[w]),
                )
            )
            in_flight[w] = i

        def handle(kind: str, w: int, payload: Any) -> None:
            if kind == "progress":
                items, nbytes, rejected = payload
                in_flight_rejects[w] += rejected
                progress.update(progress.items + items, nbytes)
                stop_at_limit()
                return
            del in_flight[w]
            in_flight_rejects[w] = 0
            # The worker's next file starts before this one is appended and checkpointed:
            # a worker left waiting for the driver's writes and fsyncs ran at half speed.
            if payload.status == "ok":
                nexts[w] = payload.next_shards
                committing[0] = payload.counts["rejected"]
            dispatch(w)
            self._file_done(w, payload)
            committing[0] = 0

        try:
            for w in range(n):
                dispatch(w)
            while in_flight:
                # A worker's pipe and its process sentinel together: a message is read as
                # soon as it is sent, and a worker that dies is noticed at once (not when the
                # others run out of work).
                ready = set(mp_wait(conns + [p.sentinel for p in procs], timeout=1.0))
                for w, conn in enumerate(conns):
                    while w in in_flight and conn in ready and conn.poll():
                        try:
                            kind, _, payload = conn.recv()
                        except EOFError:
                            break
                        handle(kind, w, payload)
                self._check_alive(procs, in_flight)
            for conn in conns:
                with contextlib.suppress(OSError):
                    conn.send(None)
            for p in procs:
                p.join(timeout=10)
        finally:
            for p in procs:
                if p.is_alive():
                    p.kill()  # workers ignore SIGTERM and SIGINT: the driver decides
            for p in procs:
                p.join(timeout=10)
            for conn in conns:
                conn.close()

    def _check_alive(self, procs: list[Any], in_flight: dict[int, int]) -> None:
        for w, i in in_flight.items():
            code = procs[w].exitcode
            if code is not None:
                how = f"signal {-code} ({signal.Signals(-code).name})" if code < 0 else f"{code}"
                raise WorkerDied(
                    f"worker {w} (pid {procs[w].pid}) died with {how} while splitting "
                    f"{self.source.files[i].name}; run split again with --resume to continue "
                    "from the last finished file"
                )

    def _file_done(self, w: int, r: FileResult) -> None:
        name = self.source.files[r.index].name
        self.worker_peak_rss = max(self.worker_peak_rss, r.peak_rss)
        if r.status == "fatal":
            raise DdbShardError(r.reason)
        if r.status == "disk":
            raise LocalDiskError(r.reason)
        if r.status == "bad":
            Path(r.spill).unlink(missing_ok=True)
            if self.options.on_bad_file == "stop":
                raise InputError(
                    f"{name}: {r.reason} (the run stopped: --resume continues after the file "
                    "is fixed; --on-bad-file skip goes on without bad files)"
                )
            self.ckpt["bad"].append({"file": name, "reason": r.reason})
            self.state.save(self.ckpt)
            return
        self._commit(w, name, r)

    def _object(self, key: str) -> OutputObject:
        obj = self.objects.get(key)
        if obj is None:
            obj = self.objects[key] = self.dest.open_object(key, None)
        return obj

    def _commit(self, w: int, name: str, r: FileResult) -> None:
        """Appends a finished file's output to the shards, makes it durable, then records it
        in the checkpoint. Killed anywhere before the checkpoint is saved, a resume cuts every
        object back to the previous checkpoint and reads the file again."""
        touched: dict[str, OutputObject] = {}
        unhashed = 0
        with SpillFile(r.spill) as spill:
            for t, s, data in spill.records():
                key = self.rejects_key if t == REJECTS else self._key(t, s)
                obj = touched.get(key) or self._object(key)
                touched[key] = obj
                obj.append(data)
                unhashed += len(data)
                if unhashed >= HASH_BATCH:
                    hash_appends(touched.values())
                    spill.forget_used()
                    unhashed = 0
            hash_appends(touched.values())
        crashpoints.reached("appended")
        states = {key: obj.sync() for key, obj in touched.items()}
        crashpoints.reached("synced")
        ck = self.ckpt
        add_counts(ck["counts"], r.counts)
        for t, per_shard in enumerate(r.shard_stats):
            for s, (items, raw) in enumerate(per_shard):
                ck["shard_stats"][t][s][0] += items
                ck["shard_stats"][t][s][1] += raw
        ck["bytes_in"] += r.bytes_in
        ck["bytes_uncompressed"] += r.bytes_uncompressed
        ck["done"][name] = {
            "read": r.counts["read"],
            "rejected": r.counts["rejected"],
            "version": self.source.files[r.index].version,
        }
        ck["worker_next"][w] = r.next_shards
        ck["objects"].update(states)
        self.state.save(ck)
        crashpoints.reached("checkpointed")
        for obj in touched.values():
            obj.checkpointed()
        Path(r.spill).unlink(missing_ok=True)
        self.read_now += 1

    # --- the end: complete objects, manifests, import requests, summary ---------------------

    def _complete_objects(self) -> dict[str, str]:
        """Completes every output object on the dest and records each as complete in the
        checkpoint; returns their MD5s. A resume after a kill in here completes again only
        what the checkpoint does not record as complete (io/objects.py says why that is safe)."""
        ck = self.ckpt
        if not ck.get("finishing"):
            ck["finishing"] = True  # from here on, no input file is read again
            self.state.save(ck)
        todo = [obj for obj in self.objects.values() if obj.done is None]
        # Multipart objects: their last parts, then their part lists in the checkpoint.
        prepared = self._each(todo, lambda obj: obj.finish_prepare())
        if any(st is not None for st in prepared.values()):
            ck["objects"].update({k: st for k, st in prepared.items() if st is not None})
            self.state.save(ck)
        done: dict[str, dict[str, Any]] = {}
        try:
            self._each(todo, lambda obj: done.__setitem__(obj.key, obj.finish()))
        finally:
            if done:  # those finished before a failure need not be finished again
                ck["objects"].update(done)
                self.state.save(ck)
        crashpoints.reached("object_recorded")
        for obj in todo:
            release = getattr(obj, "release", None)
            if release is not None:
                release()
        md5s = {}
        for key, obj in self.objects.items():
            assert obj.done is not None
            md5s[key] = str(obj.done["md5"])
        return md5s

    def _each(
        self, objects: Iterable[OutputObject], call: Callable[[OutputObject], Any]
    ) -> dict[str, Any]:
        """call(obj) for every object: side by side for S3 (each is a request or two)."""
        objects = list(objects)
        if not self.dest.is_s3 or len(objects) < 2:
            return {obj.key: call(obj) for obj in objects}
        pool = ThreadPoolExecutor(max_workers=FINISH_CONCURRENCY)
        try:
            futures = {obj.key: pool.submit(call, obj) for obj in objects}
            results = {key: f.result() for key, f in futures.items()}
        except BaseException:
            # Ctrl-C or a failed object: what has not started is not started (the requests in
            # flight end on their own); a resume finishes the rest.
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
        return results

    def _finish(self, seconds: float) -> SplitResult:
        config, dest, ck = self.config, self.dest, self.ckpt
        md5s = self._complete_objects()
        manifests = {}
        for t, target in enumerate(config.targets):
            entries = []
            for s, (items, raw_bytes) in enumerate(ck["shard_stats"][t]):
                key = self._key(t, s)
                obj = self.objects.get(key)
                if obj is not None:
                    entries.append(shard_entry(key, items, obj.size, raw_bytes, md5s[key]))
            manifests[target.name] = target_manifest(config, target.name, entries)

        summary = run_summary(
            config,
            self.source,
            ck["counts"],
            ck["shard_stats"],
            seconds,
            ck["started_at"],
            ck["bytes_in"],
            ck["bytes_uncompressed"],
            sum(m["bytes"] for m in manifests.values()),
        )
        summary["files"] = {
            "total": len(self.file_share),
            "read": self.read_now,
            "skipped": self.skipped,
            "bad": ck["bad"],
        }
        summary["runs"] = ck["runs"]
        summary["fingerprint"] = self.fingerprint
        summary["stopped"] = self.stopped
        summary["memory"] = {
            "worker_peak_rss_mb": round(self.worker_peak_rss / 2**20, 1),
            "driver_peak_rss_mb": round(peak_rss() / 2**20, 1),
        }
        if self.node is None:
            target_dirs = write_target_files(config, dest, manifests, self.options.s3_dest)
            dest.write_json("_summary.json", summary)
        else:
            # finalize writes the targets' files once every node is done (nodes.py)
            target_dirs = []
            summary["node"] = {
                "index": self.node.index,
                "count": self.node.count,
                "fingerprint": fingerprint(
                    build_core_spec(self.config, shard_counts(config, self.source)),
                    [(f.name, f.md5_base64, f.item_count) for f in self.source.files],
                ),
                "manifests": manifests,
            }
            dest.write_json(f"{self.node.dir}/summary.json", summary)
        crashpoints.reached("summary")
        crashpoints.reached("finished")
        self.state.remove()
        return SplitResult(summary, exit_code(config, summary), config.dest, target_dirs)


def shard_counts(config: SplitConfig, source: Source) -> dict[str, int]:
    if config.output.shards != "auto":
        return {t.name: int(config.output.shards) for t in config.targets}
    if source.item_count is None:
        # No manifest: estimate from compressed size (export lines average ~100 bytes gzipped).
        estimate = source.total_bytes // 100
        return {t.name: auto_shards(estimate) for t in config.targets}
    return {t.name: auto_shards(source.item_count) for t in config.targets}
