"""The split stage, the main job: source files → worker processes → shards, manifests, summary.

- driver.py: the run (plan, dispatch, commit, finish) and its resume;
- worker.py: one process streaming files through the native Splitter into spill files;
- state.py: the checkpoint, the spill folder, the run's locks;
- manifests.py: shard entries, target manifests, import requests, the run summary;
- nodes.py, finalize.py: one export split over an AWS Batch array job, then joined.
"""
