"""Where bytes come from and go to: local disk and S3, below every stage that reads or writes.

- storage.py: S3 clients with the retry policy, S3 URIs, one-line errors, local output checks;
- localfs.py: the local disk through the few calls a source makes, without fsspec;
- source.py: what a job reads (an export root with its manifests, or a folder/glob of files);
- objects.py: the append-only output objects (shards, rejects) that survive a crash;
- sink.py: the destination those objects live in, with its listing and small JSON files.

It imports no stage above it (config, split, catchup, compare).
"""
