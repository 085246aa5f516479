"""The card OS kernel: applets, the file system, persistent store and image, PINs and keys,
secure messaging, the crypto layer and the lifecycle table.

Imports only `chip.iso`."""
