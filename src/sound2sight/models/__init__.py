"""Model definitions; import from the submodules (``sound2sight.models.image``, ...)."""
