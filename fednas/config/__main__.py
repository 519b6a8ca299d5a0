"""``python -m fednas.config``: print the reference table of every key."""

from fednas.config import markdown_table

print(markdown_table())
