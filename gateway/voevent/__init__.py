"""Alert -> VOEvent 2.0 (``build``, per survey ``rubin`` and ``ztf``), safe parsing of incoming VOEvents
(``parse``), XSD validation (``validate``) and fast MJD -> UTC ISO-8601 conversion (``times``).

Touches no network. The mapping from alert fields to VOEvent elements is written down in docs/mapping.rst.
"""
