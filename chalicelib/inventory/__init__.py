"""S3 Inventory: the daily (or weekly) list of every version a backup bucket holds, which S3 writes itself.

A whole-bucket pass (verification, the prune's sweep of unnamed versions, the cost report) can read one
report instead of listing or sending a HEAD per version: 0.0025 USD per million objects listed, no request
against the bucket and no Lambda time spent listing.

- `configuration.py`: the inventory configuration a backup bucket gets, the destination bucket's policy
  statements, and the differences between a stored configuration and the wanted one (drift).
- `reports.py`: finding the newest delivered report, checking it (checksums, format, schema) and reading its
  rows as typed records, in the order S3 wrote them or sorted by (key, version id).
"""
