"""What is Rubin-specific in a VOEvent: facility (How), Error2Radius default, extra diaSource Params.

Everything else comes through :mod:`gateway.alerts.fields` and is common to all surveys. Rubin times are
MJD TAI at mid-exposure (``midpointMjdTai``, ``midPointTai`` before 5.0).
"""

from gateway.voevent.spec import FLOAT, INT, Site, SurveyProfile, fmt_float, fmt_int, param_attrs

#: Error2Radius when a diaSource has no raErr/decErr (schemas 3.0-6.x publish none, later ones allow null):
#: 0.1 arcsec, about the centroid error of a 5-sigma detection in 0.7 arcsec seeing (FWHM / (2.35 SNR)).
DEFAULT_ERROR_ARCSEC = 0.1

#: The Simonyi Survey Telescope, as Rubin's own software places it (lat -30.244639, lon -70.749417, 2663 m)
SITE = Site("Rubin Observatory, Cerro Pachon", "Vera C. Rubin Observatory, Simonyi Survey Telescope",
            round(360.0 - 70.749417, 6), -30.244639, 2663.0, "the coordinates Rubin's software uses for the telescope")
#: Rubin alerts give no exposure time; a Rubin survey visit is one 30 s exposure
EXPOSURE_S = 30.0

#: (diaSource field, Param attrs, formatter): present in some schema versions only; emitted when not null
EXTRA_PARAMS = (
    ("visit", param_attrs("visit", "meta.id;obs", None, INT), fmt_int),
    ("ccdVisitId", param_attrs("ccd_visit_id", "meta.id;obs", None, INT), fmt_int),
    ("detector", param_attrs("detector", "meta.id;instr.det", None, INT), fmt_int),
    ("scienceFlux", param_attrs("science_flux", "phot.flux.density;em.opt", "nJy", FLOAT), fmt_float),
    ("scienceFluxErr", param_attrs("science_flux_err", "stat.error;phot.flux.density;em.opt", "nJy", FLOAT),
     fmt_float),
    ("totFlux", param_attrs("science_flux", "phot.flux.density;em.opt", "nJy", FLOAT), fmt_float),
    ("totFluxErr", param_attrs("science_flux_err", "stat.error;phot.flux.density;em.opt", "nJy", FLOAT),
     fmt_float),
    ("apFlux", param_attrs("ap_flux", "phot.flux.density;em.opt", "nJy", FLOAT), fmt_float),
    ("apFluxErr", param_attrs("ap_flux_err", "stat.error;phot.flux.density;em.opt", "nJy", FLOAT), fmt_float),
    ("extendedness", param_attrs("extendedness", "src.class.starGalaxy", None, FLOAT), fmt_float),
    # 11.1+: the GCN notice's observation start/stop come from it (the time is mid-exposure)
    ("exposureTime", param_attrs("exptime", "time.duration;obs.exposure", "s", FLOAT), fmt_float),
)

PROFILE = SurveyProfile(
    label="Rubin",
    scale="tai",
    how=("Vera C. Rubin Observatory, Simonyi Survey Telescope (8.4 m), LSSTCam: detection on a difference "
         "image (Rubin Alert Production), from the Rubin alert stream"),
    references=("https://rubinobservatory.org/", "https://github.com/lsst/alert_packet"),
    site=SITE,
    default_error_deg=DEFAULT_ERROR_ARCSEC / 3600.0,
    exposure_s=EXPOSURE_S,
    time_note="MJD TAI at mid-exposure, as Rubin publishes it (midpointMjdTai)",
    time_source="Rubin's midpointMjdTai; the exposure time is the nominal 30 s visit",
    trigger_type="diaSource",
    extra_params=EXTRA_PARAMS,
    object_types={"diaObject": "diaObject", "ssObject": "ssObject", "diaSource": "diaSource"},
)
