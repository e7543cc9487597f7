"""Verifier soundness: networks with hidden counterexamples, their files, and the checks.

Data flow: a generator (``needle``, the constructive CPU one; ``trained``, SoundnessBench's
recipe for a GPU; ``edge_cases``, hand-built ties) builds a
:class:`~vcheck.soundness.instances.SoundnessNetwork` (plain nn.Sequential + instances with
their private x*), ``vnncomp`` writes and reads it in VNN-COMP layout, verifiers
(``vcheck.verify``) answer per instance, and the suite compares.
"""
