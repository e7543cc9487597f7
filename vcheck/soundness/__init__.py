"""Verifier soundness: networks with hidden counterexamples, their files, and the checks.

Data flow: a generator (``needle``) builds a :class:`~vcheck.soundness.instances.SoundnessNetwork`
(plain nn.Sequential + instances with their private x*), ``vnncomp`` writes and reads it in
VNN-COMP layout, verifiers (``vcheck.verify``) answer per instance, and the suite compares.
"""
