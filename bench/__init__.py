"""Load-benchmark harness: ftp-cluster side by side with the FTP servers operators would pick.

``python -m bench --help`` lists the options; ``bench/README.md`` explains the scenarios.
"""
