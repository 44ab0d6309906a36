"""What is ZTF-specific in a VOEvent: facility (How), Error2Radius default, extra candidate Params.

ZTF times are JD UTC at the *start* of the exposure (``candidate.jd``). The ``mjd_utc`` Params keep that instant
(as published; their Description says so); WhereWhen gives mid-exposure, as for Rubin: ``jd`` plus half of
``exptime`` (s; 30 s when the alert has none), with half the exposure as the time's Error.
"""

from gateway.voevent.spec import FLOAT, INT, Site, SurveyProfile, fmt_float, fmt_int, param_attrs

#: Error2Radius for ZTF, which publishes no per-alert position error: 0.2 arcsec, about the centroid error of
#: a 5-sigma detection in ZTF's ~2 arcsec seeing (FWHM / (2.35 SNR)); bright sources are better (~0.1").
DEFAULT_ERROR_ARCSEC = 0.2

#: The Samuel Oschin 48-inch (P48), as ZTF's scheduler places it (33d21m26.35s N, 116d51m32.04s W, 1707 m)
SITE = Site("Palomar", "Palomar Observatory, Samuel Oschin 48-inch Schmidt telescope (P48)",
            round(360.0 - (116.0 + 51.0 / 60.0 + 32.04 / 3600.0), 6), round(33.0 + 21.0 / 60.0 + 26.35 / 3600.0, 6), 1707.0,
            "the coordinates ZTF's scheduler uses for P48")
#: ZTF survey exposures are 30 s (the alert's exptime says when it differs)
EXPOSURE_S = 30.0

#: (candidate field, Param attrs, formatter): emitted when present and not null
EXTRA_PARAMS = (
    ("rb", param_attrs("rb", "stat.probability", None, FLOAT), fmt_float),
    ("drb", param_attrs("drb", "stat.probability", None, FLOAT), fmt_float),
    ("diffmaglim", param_attrs("diffmaglim", "phot.mag;stat.max", "mag", FLOAT), fmt_float),
    ("exptime", param_attrs("exptime", "time.duration;obs.exposure", "s", FLOAT), fmt_float),
    ("fwhm", param_attrs("fwhm", "phys.size.diameter;instr.det.psf", "pix", FLOAT), fmt_float),
    ("field", param_attrs("field", "meta.id;obs.field", None, INT), fmt_int),
    ("rcid", param_attrs("rcid", "meta.id;instr.det", None, INT), fmt_int),
    ("programid", param_attrs("programid", "meta.id;obs.proposal", None, INT), fmt_int),
    ("classtar", param_attrs("classtar", "src.class.starGalaxy", None, FLOAT), fmt_float),
    ("sgscore1", param_attrs("sgscore1", "src.class.starGalaxy", None, FLOAT), fmt_float),
    ("distpsnr1", param_attrs("distpsnr1", "pos.angDistance", "arcsec", FLOAT), fmt_float),
    ("ssnamenr", param_attrs("ssnamenr", "meta.id", None, None), str),
    ("ssdistnr", param_attrs("ssdistnr", "pos.angDistance", "arcsec", FLOAT), fmt_float),
)

PROFILE = SurveyProfile(
    label="ZTF",
    scale="utc",
    how=("Zwicky Transient Facility: Palomar Observatory Samuel Oschin 48-inch Schmidt telescope, ZTF camera; "
         "detection on a difference image (ZTF IPAC pipeline), from the ZTF alert stream"),
    references=("https://www.ztf.caltech.edu/", "https://zwickytransientfacility.github.io/ztf-avro-alert/"),
    site=SITE,
    default_error_deg=DEFAULT_ERROR_ARCSEC / 3600.0,
    exposure_s=EXPOSURE_S,
    time_note="MJD UTC at the start of the exposure, as ZTF publishes it (candidate.jd - 2400000.5); "
              "WhereWhen gives mid-exposure",
    time_source="ZTF's candidate.jd, the start of the exposure, plus half of exptime (30 s when absent)",
    trigger_type="candidate",
    extra_params=EXTRA_PARAMS,
    object_types={},
    default_object_type="object",
    # ZTF writes -999 (distances, magnitudes) or the string "null" (ssnamenr) for "none"
    missing=frozenset({-999, -999.0, "null"}),
)
