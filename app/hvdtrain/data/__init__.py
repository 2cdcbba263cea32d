"""The data path: the record schema (records), the manifest every later step checks against, and
the commands that write or check shards (prep, index, verify, demo data), with their worker pool."""
