"""APDU traces: the `.apdu` format, scriptor import/export, replay and recording, the curated
traces and the pytest plugin that collects them."""
