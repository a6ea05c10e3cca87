"""The catch-up after an export: which keys changed (`keys`), and writing their current state
to the targets (`sync`, or `replicate` continuously from the stream).

- changes.py, changefiles.py: change records (streams, Kinesis, incremental exports) and files;
- keysfile.py: the keys file `keys` and `diff` write and `sync` reads;
- wire.py: attribute values on the wire and in boto3's form;
- routing.py: where an item goes, by the same native Splitter split runs;
- syncplan.py, syncrun.py: what to write and delete per key, and the rounds that do it;
- dynamo.py: BatchGetItem/BatchWriteItem with retries, budgets and nothing dropped.
- wireclient.py: those two calls posted as DynamoDB JSON (the wire form), signed by botocore.
- streams.py, kinesis.py: DynamoDB Streams and Kinesis Data Streams read directly, with a
  checkpoint (`keys --from-stream`, `--from-kinesis`, `replicate`).
- replicator.py: `replicate`'s loop: the stream's batches applied by sync's engine.
"""
