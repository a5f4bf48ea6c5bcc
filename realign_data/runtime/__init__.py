"""Runtime: what every stage leans on, and nothing else: atomic files, locks, jobs and their workers, devices, secret redaction, quiet logs, the Hub deadline."""
