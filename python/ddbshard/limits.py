"""AWS's limits that ddbshard works within, in one place, each with where it is documented.

Named here so that a number means the same wherever it is checked: the config (names), the
split (objects per import), estimate (what an import will take), import, and the catch-up
(batch sizes). The 400 KB item limit is the Rust core's (it checks every item it writes).
"""

from __future__ import annotations

# ImportTable (DynamoDB service quotas; AWS-FORMATS.md §3.3).
MAX_IMPORT_OBJECTS = 50_000  # S3 objects one import reads, in every Region
MAX_CONCURRENT_IMPORTS = 50  # import jobs in flight per account (LimitExceededException)
# The sum of the compressed S3 objects of all imports in flight: 15 TB in these Regions, 1 TB
# in the others; counted in decimal TB, the smaller reading, so a warning errs early.
IN_FLIGHT_IMPORT_TB = {"us-east-1": 15, "us-west-2": 15, "eu-west-1": 15}
IN_FLIGHT_IMPORT_TB_ELSEWHERE = 1
# ImportTable best practice (AWS-FORMATS.md §3.4): about 4,000,000 items of under 1 KB per
# object, proportionally fewer for larger items.
ITEMS_PER_IMPORT_OBJECT = 4_000_000

# DynamoDB naming rules (AWS-FORMATS.md §4): attribute names are 1 to 65,535 bytes of UTF-8;
# table and index key attributes, INCLUDE-projected and TTL attributes at most 255.
MAX_ATTRIBUTE_NAME_BYTES = 65_535
MAX_KEY_NAME_BYTES = 255

# BatchGetItem and BatchWriteItem (DynamoDB API reference).
MAX_BATCH_GET = 100  # keys per BatchGetItem call
MAX_BATCH_WRITE = 25  # put or delete requests per BatchWriteItem call
