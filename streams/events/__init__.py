"""The wire format: event records (dataclasses mirroring `schemas/*.avsc`) and their Avro codecs."""
