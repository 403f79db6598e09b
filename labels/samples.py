"""Synthetic example labels for previews, tests and benchmarks.

Facility numbers (W9999, W9998) and product codes (S1234) are made up; nothing here comes from
ICCBBA tables. Check characters are computed with python-stdnum's ISO 7064 MOD 37-2.
"""

from __future__ import annotations

from stdnum import ean
from stdnum.iso7064 import mod_37_2

from labels.data import ApheresisBagLabel
from labels.data import CourierJobTicket
from labels.data import CryoshipperLabel
from labels.data import FinalProductLabel
from labels.data import LabelData
from labels.data import ProcessingLabel

TEMPLATE_VERSION = "TPL 1.0"
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _coi(n: int) -> tuple[str, str, str]:
    seq = "".join(_ALNUM[(n // 36**i) % 36] for i in reversed(range(6)))
    content = f"CHW999926{seq}"
    check = str(mod_37_2.calc_check_digit(content))
    return f"CH W9999 26 {seq}", check, f"&/{content}"


def _din(n: int, flags: str = "00") -> tuple[str, str, str]:
    din = f"W999926{n:06d}"
    return f"W9999 26 {n:06d}", str(mod_37_2.calc_check_digit(din)), f"={din}{flags}"


def _grai(n: int) -> str:
    body = "061414100001"  # GS1 example company prefix + asset type
    return f"(8003)0{body}{ean.calc_check_digit(body)}CS{n:04d}(7003)2612091400"


def apheresis_bag(n: int = 123, *, reprint: bool = False) -> ApheresisBagLabel:
    din_grouped, din_k, din_barcode = _din(n, "05" if reprint else "00")
    coi_grouped, coi_k, coi_barcode = _coi(n)
    return ApheresisBagLabel(
        din_grouped=din_grouped,
        din_check_char=din_k,
        din_barcode=din_barcode,
        flags="05" if reprint else "",
        product_code_barcode="=<S1234100",
        product_description="APHERESIS MNC, AUTOLOGOUS, FOR MANUFACTURING",
        collection_date_text="03 MAY 2026 09:40",
        collection_date_barcode="=*026123",
        expiry_date_text="05 MAY 2026 23:59",
        expiry_date_barcode="=>026125",
        coi_grouped=coi_grouped,
        coi_check_char=coi_k,
        coi_barcode=coi_barcode,
        datamatrix_data=f"=+04000{din_barcode}=<S1234100=*026123{coi_barcode}",
        qr_url="https://coi.example.org/t/Q8ZK4N2PX7",
        reprint=reprint,
        template_version=TEMPLATE_VERSION,
    )


def final_product(n: int = 123, *, reprint: bool = False) -> FinalProductLabel:
    din_grouped, din_k, din_barcode = _din(n + 500000, "01")
    coi_grouped, coi_k, coi_barcode = _coi(n)
    return FinalProductLabel(
        din_grouped=din_grouped,
        din_check_char=din_k,
        din_barcode=din_barcode,
        flags="01",
        product_code_barcode="=<S5678100",
        product_description="CAR T CELLS IN SUSPENSION FOR IV INFUSION, CRYOPRESERVED",
        expiry_date_text="30 NOV 2026",
        expiry_date_barcode="=>026334",
        coi_grouped=coi_grouped,
        coi_check_char=coi_k,
        coi_barcode=coi_barcode,
        datamatrix_data=f"=+03000{din_barcode}=<S5678100=>026334{coi_barcode}",
        bag_text="BAG 1 OF 1",
        storage_text="STORE IN VAPOUR PHASE OF LIQUID NITROGEN AT -150 C OR COLDER",
        reprint=reprint,
        template_version=TEMPLATE_VERSION,
    )


def processing(n: int = 123, *, reprint: bool = False) -> ProcessingLabel:
    coi_grouped, coi_k, coi_barcode = _coi(n)
    return ProcessingLabel(
        coi_grouped=coi_grouped,
        coi_check_char=coi_k,
        coi_barcode=coi_barcode,
        step_text="TRANSDUCTION",
        container_text="CASSETTE 2 OF 3",
        datamatrix_data=f"{coi_barcode}",
        reprint=reprint,
        template_version=TEMPLATE_VERSION,
    )


def cryoshipper(n: int = 417, *, reprint: bool = False) -> CryoshipperLabel:
    return CryoshipperLabel(
        shipper_serial=f"CS{n:04d}",
        gs1_data=_grai(n),
        hold_time_text="DRY HOLD TIME 10 DAYS",
        hold_until_text="HOLD UNTIL 2026-12-09 14:00 UTC",
        condition_text="LN2 DRY VAPOUR SHIPPER - KEEP UPRIGHT - DO NOT X-RAY",
        reprint=reprint,
        template_version=TEMPLATE_VERSION,
    )


def courier_job(n: int = 42, *, reprint: bool = False) -> CourierJobTicket:
    return CourierJobTicket(
        job_code=f"JX7-{n:04d}",
        pickup_address=("EXAMPLE APHERESIS CENTRE", "100 SAMPLE STREET", "SPRINGFIELD 00000"),
        dropoff_address=("EXAMPLE CELL MANUFACTURING", "LOADING DOCK 2", "RIVERTON 00001"),
        pickup_window_text="MON 04 MAY 10:00-12:00",
        dropoff_window_text="TUE 05 MAY BY 09:00",
        shipper_serial_last4=f"{n:04d}",
        seal_last4="7731",
        qr_url="https://coi.example.org/j/H3M9TQ5RWB",
        reprint=reprint,
        template_version=TEMPLATE_VERSION,
    )


def one_of_each(*, reprint: bool = False) -> list[LabelData]:
    """One sample of every label kind."""
    return [
        apheresis_bag(reprint=reprint),
        final_product(reprint=reprint),
        processing(reprint=reprint),
        cryoshipper(reprint=reprint),
        courier_job(reprint=reprint),
    ]


def batch(count: int) -> list[LabelData]:
    """``count`` distinct labels cycling through every kind (each with its own identifiers)."""
    makers = (apheresis_bag, final_product, processing, cryoshipper, courier_job)
    return [makers[i % len(makers)](i + 1) for i in range(count)]
