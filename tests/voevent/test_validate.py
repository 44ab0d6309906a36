"""validate(): problems name the line and what is wrong; offline; safe to call from several threads."""

from concurrent.futures import ThreadPoolExecutor

from gateway.voevent.validate import is_valid, validate

NS = "http://www.ivoa.net/xml/VOEvent/v2.0"

GOOD = f"""<?xml version="1.0" encoding="UTF-8"?>
<voe:VOEvent xmlns:voe="{NS}" version="2.0" ivorn="ivo://test.example/stream#1" role="test">
  <Who>
    <AuthorIVORN>ivo://test.example/stream</AuthorIVORN>
    <Date>2026-11-24T19:00:00</Date>
  </Who>
  <WhereWhen>
    <ObsDataLocation>
      <ObservatoryLocation id="Palomar Observatory"/>
      <ObservationLocation>
        <AstroCoordSystem id="UTC-ICRS-TOPO"/>
        <AstroCoords coord_system_id="UTC-ICRS-TOPO">
          <Time unit="s"><TimeInstant><ISOTime>2026-11-24T18:00:00.000</ISOTime></TimeInstant></Time>
          <Position2D unit="deg"><Value2><C1>10.5</C1><C2>-20.25</C2></Value2><Error2Radius>0.0001</Error2Radius></Position2D>
        </AstroCoords>
      </ObservationLocation>
    </ObsDataLocation>
  </WhereWhen>
</voe:VOEvent>
"""

BAD = f"""<?xml version="1.0" encoding="UTF-8"?>
<voe:VOEvent xmlns:voe="{NS}" version="2.0" ivorn="ivo://test.example/stream#1" role="bogus">
  <Who>
    <Date>yesterday</Date>
  </Who>
  <What>
    <Param name="mag" value="19.5" dataType="double"/>
    <Surprise/>
  </What>
</voe:VOEvent>
"""


def test_a_valid_voevent_has_no_problems():
    assert validate(GOOD.encode()) == []
    assert is_valid(GOOD.encode())


def test_each_problem_names_its_line_and_what_is_wrong():
    problems = validate(BAD.encode())
    assert not is_valid(BAD.encode())
    assert len(problems) == 4, problems
    role, date, data_type, surprise = problems
    assert role.startswith("line 2:") and "role" in role and "bogus" in role
    assert date.startswith("line 4:") and "Date" in date and "xs:dateTime" in date
    assert data_type.startswith("line 7:") and "dataType" in data_type and "double" in data_type
    assert surprise.startswith("line 8:") and "Surprise" in surprise


def test_missing_required_parts():
    xml = f'<voe:VOEvent xmlns:voe="{NS}" role="test"/>'.encode()
    problems = validate(xml)
    assert any("line 1:" in p and "'version' is required" in p for p in problems), problems
    assert any("'ivorn' is required" in p for p in problems), problems


def test_not_xml_names_the_line():
    problems = validate(b"<?xml version='1.0'?>\n<voe:VOEvent xmlns:voe='x'>\n<Who>\n</voe:VOEvent>")
    assert len(problems) == 1 and problems[0].startswith("line 4: not XML:"), problems


def test_doctype_wrong_root_and_ivorn_are_reported():
    doctype = GOOD.replace('<voe:VOEvent', '<!DOCTYPE v [<!ENTITY x "y">]>\n<voe:VOEvent', 1).encode()
    assert "DOCTYPE" in validate(doctype)[0]
    wrong = validate(b'<Transport xmlns="http://www.telescope-networks.org/xml/Transport/v1.1"/>')
    assert wrong[0].startswith("line 1:") and "expected a VOEvent 2.0 root" in wrong[0]
    v11 = validate(b'<voe:VOEvent xmlns:voe="http://www.ivoa.net/xml/VOEvent/v1.1" ivorn="ivo://a.b/c#d"/>')
    assert "VOEvent 2.0 root" in v11[0]
    no_local_id = validate(GOOD.replace("stream#1", "stream").encode())
    assert no_local_id == ["line 2: ivorn 'ivo://test.example/stream' is not of the form "
                           "ivo://authority/path#localID (the /path may be left out; ?localID for #localID is "
                           "allowed too)"]


def test_empty_and_oversized_input():
    assert validate(b"")[0].startswith("line 1: not XML")
    assert "too large" in validate(GOOD.encode(), max_bytes=100)[0]


def test_concurrent_validation_from_threads_gives_each_caller_its_own_answer():
    documents = [GOOD.encode(), BAD.encode()] * 200
    expected = [validate(d) for d in documents[:2]]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(validate, documents))
    assert results == expected * 200
