"""Model storage: local disk and object stores (``gs://``, ``s3://``), and the local cache that
versions on object stores are downloaded into before they load."""
