"""Logger-file import: two real Berlinger exports and synthetic CSVs.

Expected values were read by hand from the fixture files; each carries the file line it came
from (``FT:`` = fridgetag-ul_100800001215_202304201410.txt, ``QT:`` = the Q-tag export).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import timedelta
from pathlib import Path

import pytest

from tracker.domain.excursions import evaluate
from tracker.domain.excursions import rules_from_alarm_settings
from tracker.domain.loggers import AlarmSetting
from tracker.domain.loggers import ImportIssue
from tracker.domain.loggers import LoggerImport
from tracker.domain.loggers import Reading
from tracker.domain.loggers import detect_format
from tracker.domain.loggers import iter_csv_readings
from tracker.domain.loggers import parse_logger_file

DATA = Path(__file__).resolve().parent.parent / "data" / "loggers"
FRIDGETAG = "fridgetag-ul_100800001215_202304201410.txt"
QTAG = "qtag-clm-doc-lr_RCPJ00010_03_202304201359.txt"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def read(name: str) -> str:
    # newline="" keeps the CRLF line ends exactly as the device wrote them.
    with open(DATA / name, encoding="ascii", newline="") as handle:
        return handle.read()


def parse(
    name: str,
    *,
    device_utc_offset: timedelta | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> LoggerImport:
    return parse_logger_file(
        read(name), filename=name, device_utc_offset=device_utc_offset, progress=progress
    )


def codes(issues: list[ImportIssue]) -> list[tuple[int | None, str]]:
    return [(i.line, i.code) for i in issues]


# --- Fridge-tag Ultra Low ---------------------------------------------------------------------


def test_fridgetag_ul_export_is_detected_from_its_content_not_its_name() -> None:
    assert detect_format(read(FRIDGETAG)) == "berlinger_fridgetag"
    result = parse_logger_file(read(FRIDGETAG), filename="upload.csv")
    assert result.format == "berlinger_fridgetag"
    assert result.source_name == "upload.csv"


def test_fridgetag_ul_device_identity_comes_from_header_and_conf() -> None:
    device = parse(FRIDGETAG).device
    assert device is not None
    assert device.model == "Q-tag Fridge-tag Ultra Low"  # FT:1
    assert device.report_version == "0.5"  # FT:2
    assert device.firmware == "4.0p1o"  # FT:3
    assert device.serial == "100800001215"  # FT:7
    assert device.pcb == "V70663450400"  # FT:8
    assert device.lot == "1796_20_11"  # FT:10
    assert device.uses_external_sensor is True  # FT:29 "Use ext devices: 1"


def test_fridgetag_ul_alarms_are_cold_slot_0_and_hot_slot_1_single_event() -> None:
    result = parse(FRIDGETAG)
    # FT:19-22: "0: T AL: -90.0, t AL: 60" and "1: T AL: -60.0, t AL: 60"
    assert result.alarm_settings == [
        AlarmSetting(0, "cold", "consecutive", -90.0, timedelta(minutes=60)),
        AlarmSetting(1, "hot", "consecutive", -60.0, timedelta(minutes=60)),
    ]


def test_fridgetag_ul_configuration_has_interval_zone_and_sensor_timeouts() -> None:
    config = parse(FRIDGETAG).config
    assert config is not None
    assert config.logging_interval == timedelta(minutes=5)  # FT:30
    assert config.utc_offset == timedelta(0)  # FT:11 "Zone: 0.00"
    assert config.temperature_unit == "C"  # FT:17
    # FT:23-26: both sensors "Timeout: 10, Offset: +0.0"
    assert {(s.name, s.timeout, s.offset_c) for s in config.sensors} == {
        ("external", timedelta(minutes=10), 0.0),
        ("internal", timedelta(minutes=10), 0.0),
    }
    assert config.raw["Report history length"] == "56"  # FT:27
    assert config.raw["Alarm.1.T AL"] == "-60.0"


def test_fridgetag_ul_series_keeps_835_values_and_reports_6_times_without_value() -> None:
    result = parse(FRIDGETAG)
    # 841 data rows (FT:99-939); "--.-" on FT:99-101 and FT:937-939.
    assert len(result.readings) == 835
    assert [m.line for m in result.missing] == [99, 100, 101, 937, 938, 939]
    assert result.missing[0].at == utc(2023, 4, 17, 16, 6)  # FT:99
    assert result.readings[0] == Reading(utc(2023, 4, 17, 16, 21), -9.6)  # FT:102
    assert result.readings[-1] == Reading(utc(2023, 4, 20, 13, 51), -16.6)  # FT:936
    assert codes(result.warnings) == [(99, "no_value")]
    assert "99-101, 937-939" in result.warnings[0].message
    assert result.errors == []


def test_fridgetag_ul_daily_summaries_carry_the_devices_own_numbers() -> None:
    days = parse(FRIDGETAG).daily_summaries
    assert [d.day for d in days] == [date(2023, 4, d) for d in (17, 18, 19, 20)]
    first, last = days[0], days[-1]
    # FT:85: "Max T: +21.5, TS Max T: 16:06" although the logged row at 16:06 is "--.-":
    # the probe read above its logging range.
    assert (first.max_c, first.max_at) == (21.5, utc(2023, 4, 17, 16, 6))
    hot = first.alarms[1]
    # FT:91: "t Acc: 474, TS A: 17:06, T Amb: +14.3, C A: 1"
    assert hot.time_accumulated == timedelta(minutes=474)
    assert hot.first_at == utc(2023, 4, 17, 17, 6)
    assert (hot.ambient_c, hot.alarm_code) == (14.3, 1)
    assert first.alarms[0].time_accumulated == timedelta(0)  # FT:89
    # FT:44-45: "Ext Sensor timeout: t AccST: 17, TS ST: 14:04"
    external = next(t for t in last.sensor_timeouts if t.sensor == "external")
    assert external.time_accumulated == timedelta(minutes=17)
    assert external.first_at == utc(2023, 4, 20, 14, 4)
    assert last.events == 16  # FT:48
    assert last.checked_at == (utc(2023, 4, 20, 14, 9),)  # FT:50
    assert days[1].max_c == -7.6  # FT:70: finer than the 5-min log, whose max that day is -9.6


def test_fridgetag_ul_run_and_signature_block_are_kept_raw() -> None:
    result = parse(FRIDGETAG)
    assert result.run is not None
    assert result.run.activated_at == utc(2023, 4, 17, 16, 6)  # FT:33
    assert result.run.report_created_at == utc(2023, 4, 20, 14, 10)  # FT:34
    signature = result.signature
    assert signature is not None
    assert signature.first_line == 940
    assert signature.issuer == "Berlinger & Co. AG"  # FT:943
    assert signature.text.startswith("Cert:\n Vers: 1.0\n")
    assert signature.signature is not None
    assert signature.signature.startswith("8dfad5316c50")  # FT:948
    assert signature.text.endswith(signature.signature + "\n")


def test_rerunning_the_fridgetag_alarm_finds_one_ongoing_hot_breach() -> None:
    result = parse(FRIDGETAG)
    assert result.logging_interval is not None
    breaches = evaluate(
        result.readings,
        rules_from_alarm_settings(result.alarm_settings),
        expected_interval=result.logging_interval,
    )
    [breach] = breaches
    assert (breach.kind, breach.threshold_c, breach.ongoing) == ("hot", -60.0, True)
    # Our series starts at the first logged value (16:21); the device counted from 16:06 on
    # values it could not log, so it alarmed at 17:06 (FT:91) where we say 17:21.
    assert breach.start == utc(2023, 4, 17, 16, 21)
    assert breach.triggered_at == utc(2023, 4, 17, 17, 21)
    assert breach.worst_c == -9.6


# --- Q-tag CLm doc LR -------------------------------------------------------------------------


def test_qtag_device_and_configuration_are_read() -> None:
    result = parse(QTAG)
    assert result.format == "berlinger_qtag"
    device, config = result.device, result.config
    assert device is not None and config is not None
    assert (device.model, device.serial) == ("Q-tag CLm doc LR", "RCPJ00010")  # QT:1, QT:7
    assert (device.firmware, device.device_id) == ("4.7.04o", "80")  # QT:3-4
    assert config.logging_interval == timedelta(minutes=10)  # QT:28
    assert config.start_delay == timedelta(minutes=30)  # QT:12
    assert config.mkt_activation_energy_kj_per_mol == 83.0  # QT:15
    assert config.sensors[0].offset_c == 0.1  # QT:22
    assert config.raw["User String 1"] == ""  # QT:23, an empty value, not a section


def test_qtag_four_alarm_definitions_keep_type_limit_and_delay() -> None:
    # QT:32-42; slot 3 has "Type: 0" (switched off) and is left out.
    assert parse(QTAG).alarm_settings == [
        AlarmSetting(1, "hot", "consecutive", 8.0, timedelta(minutes=30), 2),
        AlarmSetting(2, "hot", "cumulative", 8.0, timedelta(minutes=60), 4),
        AlarmSetting(4, "cold", "cumulative", 2.0, timedelta(minutes=60), 3),
        AlarmSetting(5, "cold", "consecutive", 2.0, timedelta(minutes=30), 1),
    ]


def test_qtag_series_has_424_readings_every_ten_minutes() -> None:
    result = parse(QTAG)
    assert len(result.readings) == 424  # QT:68-491
    assert result.readings[0] == Reading(utc(2023, 4, 17, 15, 23), 12.7)  # QT:68
    assert result.readings[-1] == Reading(utc(2023, 4, 20, 13, 53), 10.6)  # QT:491
    assert result.missing == [] and result.markers == []  # QT:64-65: marker table is empty
    assert result.warnings == [] and result.errors == []


def test_qtag_run_summary_and_device_alarm_events() -> None:
    result = parse(QTAG)
    run = result.run
    assert run is not None
    assert run.started_at == utc(2023, 4, 17, 15, 23)  # QT:47
    assert run.stopped_at == utc(2023, 4, 20, 13, 59)  # QT:48
    assert (run.min_c, run.min_at) == (9.7, utc(2023, 4, 18, 3, 53))  # QT:52
    assert (run.mkt_c, run.run_number) == (10.4, 3)  # QT:54, QT:56
    first, second = result.alarm_events  # QT:57-63; slots 4 and 5 never started
    # QT:59: "TS S: 2023-04-17 15:33, t A: 4226, TS A: 2023-04-17 16:03, TS E:, T M: 11.4, ..."
    assert first.slot == 1
    assert first.started_at == utc(2023, 4, 17, 15, 33)
    assert first.triggered_at == utc(2023, 4, 17, 16, 3)
    assert first.ended_at is None
    assert first.time_in_alarm_zone == timedelta(minutes=4226)
    assert (first.extreme_c, first.extreme_at) == (11.4, utc(2023, 4, 17, 16, 17))
    assert (second.slot, second.triggered_at) == (2, utc(2023, 4, 17, 16, 33))  # QT:61
    assert second.extreme_c is None


def test_rerunning_qtag_alarms_agrees_with_the_device_to_one_logging_interval() -> None:
    result = parse(QTAG)
    breaches = evaluate(
        result.readings,
        rules_from_alarm_settings(result.alarm_settings),
        expected_interval=timedelta(minutes=10),
    )
    assert [(b.kind, b.mode) for b in breaches] == [("hot", "consecutive"), ("hot", "cumulative")]
    for breach, event in zip(breaches, result.alarm_events, strict=True):
        assert event.triggered_at is not None
        # The device starts counting one interval after the first (already warm) value.
        assert event.triggered_at - breach.triggered_at == timedelta(minutes=10)
        assert breach.ongoing and event.ended_at is None


# --- time zones -------------------------------------------------------------------------------


def test_zone_field_shifts_every_device_time_to_utc() -> None:
    text = read(QTAG).replace(" Zone: 0.00", " Zone: 2.00")
    result = parse_logger_file(text)
    assert result.readings[0].at == utc(2023, 4, 17, 13, 23)
    assert result.run is not None and result.run.stopped_at == utc(2023, 4, 20, 11, 59)
    assert result.alarm_events[0].started_at == utc(2023, 4, 17, 13, 33)


def test_fractional_negative_zone_is_decimal_hours() -> None:
    text = read(QTAG).replace(" Zone: 0.00", " Zone: -3.50")
    result = parse_logger_file(text)
    assert result.config is not None and result.config.utc_offset == -timedelta(hours=3.5)
    assert result.readings[0].at == utc(2023, 4, 17, 18, 53)


def test_daily_summary_times_use_the_zone_too() -> None:
    text = read(FRIDGETAG).replace(" Zone: 0.00", " Zone: 1.00")
    day = parse_logger_file(text).daily_summaries[0]
    assert day.day == date(2023, 4, 17)  # the device's own calendar day stays as written
    assert day.max_at == utc(2023, 4, 17, 15, 6)


def test_callers_device_offset_overrides_the_zone_field_with_a_warning() -> None:
    result = parse(QTAG, device_utc_offset=timedelta(hours=12))
    assert result.readings[0].at == utc(2023, 4, 17, 3, 23)
    assert codes(result.warnings) == [(11, "utc_offset_overridden")]
    assert result.config is not None and result.config.file_utc_offset == timedelta(0)


def test_export_without_zone_imports_no_times_and_says_why() -> None:
    text = read(QTAG).replace(" Zone: 0.00\r\n", "")
    result = parse_logger_file(text)
    assert result.readings == []
    assert codes(result.errors) == [(None, "missing_utc_offset")]
    assert len(result.alarm_settings) == 4  # configuration is still reported


def test_unreadable_zone_is_an_error() -> None:
    result = parse_logger_file(read(QTAG).replace(" Zone: 0.00", " Zone: 25.00"))
    assert codes(result.errors) == [(11, "bad_utc_offset")]
    assert result.readings == []


# --- other Berlinger variations ---------------------------------------------------------------


def test_line_endings_do_not_change_the_result() -> None:
    crlf = parse_logger_file(read(QTAG))
    lf = parse_logger_file(read(QTAG).replace("\r\n", "\n"))
    assert lf.readings == crlf.readings
    assert lf.alarm_settings == crlf.alarm_settings


def test_fahrenheit_exports_are_converted_to_celsius() -> None:
    result = parse_logger_file(read(FRIDGETAG).replace("Temp unit: C", "Temp unit: F"))
    assert result.readings[0].celsius == pytest.approx((-9.6 - 32) * 5 / 9, abs=1e-3)
    assert result.alarm_settings[1].threshold_c == pytest.approx((-60 - 32) * 5 / 9, abs=1e-3)
    assert "fahrenheit_converted" in [w.code for w in result.warnings]


def test_device_flags_that_contradict_its_alarm_limits_raise_a_warning() -> None:
    # Every row is flagged "x"; with hot limits moved to 13 °C no value (max 12.7) is out.
    text = read(QTAG).replace("T AL: 8.0", "T AL: 13.0")
    result = parse_logger_file(text)
    assert codes(result.warnings) == [(68, "flag_mismatch")]
    assert "424 rows" in result.warnings[0].message


def test_bad_data_rows_are_errors_with_line_numbers() -> None:
    text = read(QTAG).replace("\t2023-04-17 15:33\t11.2\tx", "\t2023-04-17 15:33\twarm\tx")
    text = text.replace("\t2023-04-17 15:43\t10.8\tx", "\t17.04.2023 15:43\t10.8\tx")
    result = parse_logger_file(text)
    assert codes(result.errors) == [(69, "bad_temperature"), (70, "bad_row")]
    assert len(result.readings) == 422
    assert "irregular_interval" in [w.code for w in result.warnings]


def test_export_without_data_section_warns_no_time_series() -> None:
    text = read(FRIDGETAG)
    text = text[: text.index("Data:")] + text[text.index("Cert:") :]
    result = parse_logger_file(text)
    assert result.readings == []
    assert len(result.daily_summaries) == 4
    assert codes(result.warnings) == [(None, "no_time_series")]


def test_progress_callback_reaches_the_total() -> None:
    calls: list[tuple[int, int]] = []
    parse(FRIDGETAG, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (841, 841)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert len(calls) >= 3


# --- generic CSV ------------------------------------------------------------------------------


def test_csv_offsets_across_a_dst_switch_become_one_utc_series() -> None:
    result = parse_logger_file(read("readings_ok.csv"), filename="readings_ok.csv")
    assert result.format == "csv"
    assert result.device is not None and result.device.serial == "LOG-0001"
    assert [r.at for r in result.readings] == [
        utc(2026, 3, 29, 0, 40) + timedelta(minutes=10 * i) for i in range(5)
    ]
    assert all(r.at.tzinfo is UTC for r in result.readings)
    assert codes(result.warnings) == [(6, "not_chronological")]
    assert result.errors == []


def test_csv_bad_rows_are_reported_with_line_and_reason_never_dropped() -> None:
    result = parse_logger_file(read("readings_bad_rows.csv"))
    assert codes(result.errors) == [
        (3, "naive_timestamp"),
        (4, "naive_timestamp"),
        (5, "bad_timestamp"),
        (6, "bad_temperature"),
        (7, "implausible_temperature"),
        (8, "wrong_column_count"),
        (9, "serial_mismatch"),
        (12, "duplicate_timestamp"),
        (13, "bad_temperature"),
    ]
    assert [r.celsius for r in result.readings] == [5.0, 5.6]  # lines 2 and 11


def test_csv_without_a_required_column_is_refused_on_the_header_line() -> None:
    result = parse_logger_file("timestamp,temp\n2026-01-01T00:00:00Z,4\n")
    assert result.format == "csv"
    assert codes(result.errors) == [(1, "missing_column")]
    assert "temperature_c" in result.errors[0].message
    assert result.readings == []
    assert parse_logger_file("time,temp\n1,2\n").format == "unknown"


def test_csv_extra_columns_are_ignored_with_a_warning() -> None:
    text = "timestamp,temperature_c,humidity\n2026-01-01T00:00:00+00:00,4.0,55\n"
    result = parse_logger_file(text)
    assert result.readings == [Reading(utc(2026, 1, 1), 4.0)]
    assert codes(result.warnings) == [(1, "unknown_column")]


def test_csv_columns_may_come_in_any_order() -> None:
    text = "temperature_c,timestamp\n-151.5,2026-01-01T00:00:00-05:00\n"
    assert parse_logger_file(text).readings == [Reading(utc(2026, 1, 1, 5), -151.5)]


def test_unknown_and_empty_input_are_errors_not_exceptions() -> None:
    assert codes(parse_logger_file("hello\nworld").errors) == [(1, "unknown_format")]
    assert codes(parse_logger_file("").errors) == [(None, "empty_file")]
    assert codes(parse_logger_file("\ufeff  \n").errors) == [(None, "empty_file")]


def test_reading_refuses_naive_datetimes_and_normalises_to_utc() -> None:
    with pytest.raises(ValueError, match="naive"):
        Reading(datetime(2026, 1, 1), 4.0)  # noqa: DTZ001
    with pytest.raises(ValueError):
        Reading(utc(2026, 1, 1), float("nan"))
    shifted = datetime.fromisoformat("2026-01-01T02:00:00+02:00")
    assert Reading(shifted, 4.0).at == utc(2026, 1, 1)


def test_issue_codes_come_from_the_documented_vocabulary() -> None:
    with pytest.raises(ValueError, match="undocumented"):
        ImportIssue(1, "made_up", "nope")


def test_csv_rows_can_be_streamed_one_by_one_with_their_line_numbers() -> None:
    lines = read("readings_bad_rows.csv").splitlines()
    streamed = list(iter_csv_readings(lines))
    assert streamed[0] == (2, Reading(utc(2026, 5, 4, 8), 5.0), "LOG-0002")
    assert [line for line, _, _ in streamed][:3] == [2, 3, 4]
    assert isinstance(streamed[1][1], ImportIssue)


def test_csv_progress_callback_ends_at_the_row_count() -> None:
    calls: list[tuple[int, int]] = []
    parse_logger_file(read("readings_ok.csv"), progress=lambda d, t: calls.append((d, t)))
    assert calls == [(5, 5)]
