"""The repofs command line: click commands that parse, prompt, print and choose exit codes."""
