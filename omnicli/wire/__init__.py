"""The wire: what travels between `omni` clients and `omni server`.

The message schema, codes and limits (`protocol`) and signed tokens (`tokens`).
Pure and stdlib only; every other layer may import it, it imports none of them.
"""
