"""Small value checks for task config arguments; each returns a message or None."""

import numbers
import os

#----------------------------------------------------------------------------

def check_text(value, required: bool = True):
    """A non-empty string (or None when not required)."""
    if value is None:
        return 'is required' if required else None
    if not isinstance(value, str) or not value.strip():
        return f'must be a non-empty string, got {value!r}'
    return None

def check_number(value, minimum=None):
    """A real number (not a bool), optionally >= minimum."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f'must be a number, got {value!r}'
    if minimum is not None and value < minimum:
        return f'must be >= {minimum}, got {value!r}'
    return None

def check_string_list(value):
    """A non-empty list of non-empty strings."""
    if not isinstance(value, (list, tuple)) or len(value) == 0:
        return f'must be a non-empty list of strings, got {value!r}'
    bad = [item for item in value if not isinstance(item, str) or not item]
    return f'must contain only non-empty strings, got {bad[0]!r}' if bad else None

def check_number_list(value, length: int, length_of: str):
    """A list of `length` numbers (its length must match the list `length_of`)."""
    if not isinstance(value, (list, tuple)):
        return f'must be a list of numbers, got {value!r}'
    if len(value) != length:
        return f'has {len(value)} weights but {length_of} has {length} entries; give one weight per entry'
    bad = [item for item in value if isinstance(item, bool) or not isinstance(item, numbers.Real)]
    return f'must contain only numbers, got {bad[0]!r}' if bad else None

def check_dir(path):
    """An existing directory."""
    if not isinstance(path, str) or not path:
        return f'must be a directory path, got {path!r}'
    if not os.path.isdir(path):
        return f'directory not found: {path} (relative paths are resolved from the working directory {os.getcwd()})'
    return None

#----------------------------------------------------------------------------
