"""The invoice lifecycle as data (issue 18), and a pure `transition()` that judges one status change.

Codes, labels and the reason codes each status accepts come from the FNFE-MPE France_RFE 1.4.0 rule set
(BR-FR-CDV-CL-06 / CL-09), as summarised in `../shared/design/chorus-reference.md` §3.2 and
`../shared/design/domain.md` §4. Who may set each status, and the order, are the gateway's reading of
XP Z12-012 (transmission statuses by the platforms, processing statuses by the buyer, 209 / 220 by the
seller); they are data here so that a bilateral agreement changes a table, not code.

Refusals carry the AFNOR Flow Service reason codes for lifecycle messages (chorus-reference.md §3.3,
`ReasonCodeEnum`): `InvoiceLCInvalidStatus`, `InvoiceLCStatusError`, `InvoiceLCRuleError`,
`InvoiceLCAccessDenied`, `InvoiceLCAmountError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType


class Actor(StrEnum):
    """Who sets a status: the gateway (issuer's platform), the seller, or the buyer (recipient)."""

    PLATFORM = "platform"
    ISSUER = "issuer"
    RECIPIENT = "recipient"


class Phase(StrEnum):
    TRANSMISSION = "transmission"  # CDAR MDT-77 = 305
    PROCESSING = "processing"  # CDAR MDT-77 = 23


# chorus-reference.md §3.3 (AFNOR XP Z12-013 Flow Service ReasonCodeEnum, lifecycle entries)
LC_INVALID_STATUS = "InvoiceLCInvalidStatus"  # not a status code of the cycle
LC_STATUS_ERROR = "InvoiceLCStatusError"  # not allowed after the invoice's current status
LC_RULE_ERROR = "InvoiceLCRuleError"  # reason missing / not allowed, or the message breaks a rule
LC_ACCESS_DENIED = "InvoiceLCAccessDenied"  # unknown invoice, or not this sender's to change
LC_AMOUNT_ERROR = "InvoiceLCAmountError"  # 212 without the amount collected

# BR-FR-CDV-CL-09: the closed list of reason codes (MDT-113), any status.
_ALL = """RETRAIT_MAN_SERV ST_CT_NON_DECLAR SUPPR_COMP_AVOIR TRANSF_PMNT_REGIE CONTACT_ACHTR NON_TRANSMISE
    JUSTIF_ABS ROUTAGE_ERR AUTRE COORD_BANC_ERR TX_TVA_ERR MONTANTTOTAL_ERR CALCUL_ERR NON_CONFORME DOUBLON
    DEST_INC DEST_ERR TRANSAC_INC EMMET_INC CONTRAT_TERM DOUBLE_FACT CMD_ERR ADR_ERR SIRET_ERR
    CODE_ROUTAGE_ERR REF_CT_ABSENT REF_ERR PU_ERR REM_ERR QTE_ERR ART_ERR MODPAI_ERR QUALITE_ERR LIVR_INCOMP
    REJ_SEMAN REJ_UNI REJ_COH REJ_ADR REJ_CONT_B2G REJ_REF_PJ REJ_ASS_PJ IRR_VIDE_F IRR_TYPE_F IRR_SYNTAX
    IRR_TAILLE_PJ IRR_NOM_PJ IRR_VID_PJ IRR_EXT_DOC IRR_TAILLE_F IRR_ANTIVIRUS IRR_NOM_F"""
ALL_REASONS: frozenset[str] = frozenset(_ALL.split())

# chorus-reference.md §3.2, reason lists per status (BR-FR-CDV-CL-09_MDT-113_<code>)
_R213 = "MONTANTTOTAL_ERR CALCUL_ERR DOUBLON DEST_INC ADR_ERR REJ_SEMAN REJ_UNI REJ_COH REJ_ADR REJ_CONT_B2G "
_R213 += "REJ_REF_PJ REJ_ASS_PJ"
_R210 = "TX_TVA_ERR MONTANTTOTAL_ERR CALCUL_ERR NON_CONFORME DOUBLON DEST_ERR TRANSAC_INC EMMET_INC "
_R210 += "CONTRAT_TERM DOUBLE_FACT CMD_ERR ADR_ERR REF_CT_ABSENT"
# B2G refusal (sender GlobalID schemeID 0238 = 9999, a public buyer on Chorus Pro): the B2B list plus these
_R210_B2G_EXTRA = "RETRAIT_MAN_SERV ST_CT_NON_DECLAR SUPPR_COMP_AVOIR TRANSF_PMNT_REGIE AUTRE COORD_BANC_ERR "
_R210_B2G_EXTRA += "LIVR_INCOMP"
_R207 = "AUTRE COORD_BANC_ERR TX_TVA_ERR MONTANTTOTAL_ERR CALCUL_ERR NON_CONFORME DOUBLON DEST_INC DEST_ERR "
_R207 += (
    "TRANSAC_INC EMMET_INC CONTRAT_TERM DOUBLE_FACT CMD_ERR ADR_ERR SIRET_ERR CODE_ROUTAGE_ERR REF_CT_ABSENT "
)
_R207 += "REF_ERR PU_ERR REM_ERR QTE_ERR ART_ERR MODPAI_ERR QUALITE_ERR LIVR_INCOMP"
_R206 = "AUTRE CMD_ERR SIRET_ERR CODE_ROUTAGE_ERR REF_CT_ABSENT REF_ERR PU_ERR REM_ERR QTE_ERR ART_ERR "
_R206 += "MODPAI_ERR QUALITE_ERR LIVR_INCOMP"
_R208 = "JUSTIF_ABS COORD_BANC_ERR CMD_ERR SIRET_ERR CODE_ROUTAGE_ERR REF_CT_ABSENT REF_ERR"
_R501 = "IRR_VIDE_F IRR_TYPE_F IRR_SYNTAX IRR_TAILLE_PJ IRR_NOM_PJ IRR_VID_PJ IRR_EXT_DOC IRR_TAILLE_F "
_R501 += "IRR_ANTIVIRUS IRR_NOM_F"


@dataclass(frozen=True)
class StatusDef:
    code: str
    label_fr: str
    label_en: str
    phase: Phase
    actors: frozenset[Actor]
    # None: any reason of the closed list (ALL_REASONS) may accompany it; a set: only those
    reasons: frozenset[str] | None = None
    reason_required: bool = False  # BR-FR-CDV-15: 206, 207, 208, 210, 213, 501
    to_ppf: bool = False  # one of the four statuses the tax authority receives (Z12-014 Annex B §1.1)
    b2g_reasons: frozenset[str] = frozenset()  # extra reasons when the sender is a public buyer (210)

    @property
    def terminal(self) -> bool:
        return not NEXT[self.code]

    def allowed_reasons(self, b2g: bool = False) -> frozenset[str]:
        base = ALL_REASONS if self.reasons is None else self.reasons
        return base | self.b2g_reasons if b2g else base


def _def(
    code: str,
    fr: str,
    en: str,
    phase: Phase,
    actors: str,
    reasons: str | None = None,
    *,
    required: bool = False,
    ppf: bool = False,
    b2g: str = "",
) -> StatusDef:
    return StatusDef(
        code=code,
        label_fr=fr,
        label_en=en,
        phase=phase,
        actors=frozenset(Actor(a) for a in actors.split()),
        reasons=None if reasons is None else frozenset(reasons.split()),
        reason_required=required,
        to_ppf=ppf,
        b2g_reasons=frozenset(b2g.split()),
    )


T, P = Phase.TRANSMISSION, Phase.PROCESSING
# Labels: chorus-reference.md §3.2 table (CL-09 titles and Annex B file names); English after Annex B EN.
STATUSES: Mapping[str, StatusDef] = MappingProxyType(
    {
        s.code: s
        for s in (
            _def("200", "Déposée", "Submitted", T, "platform", "NON_TRANSMISE", ppf=True),
            _def("201", "Émise par la plateforme", "Issued by the platform", T, "platform"),
            _def("202", "Reçue par la plateforme", "Received by the platform", T, "platform"),
            _def("203", "Mise à disposition", "Made available", T, "platform"),
            _def("204", "Prise en charge", "In hand", P, "recipient"),
            _def("205", "Approuvée", "Approved", P, "recipient"),
            _def(
                "206", "Approuvée partiellement", "Partially approved", P, "recipient", _R206, required=True
            ),
            _def("207", "En litige", "Disputed", P, "recipient", _R207, required=True),
            _def("208", "Suspendue", "Suspended", P, "recipient", _R208, required=True),
            _def("209", "Complétée", "Completed", P, "issuer"),
            _def(
                "210",
                "Refusée",
                "Refused",
                P,
                "recipient",
                _R210,
                required=True,
                ppf=True,
                b2g=_R210_B2G_EXTRA,
            ),
            _def("211", "Paiement transmis", "Payment sent", P, "recipient"),
            # The seller declares the collection (Annex B UC1: IssuerTradeParty SE); issue 18 also has the
            # buyer's side send it, so both may.
            _def("212", "Encaissée", "Payment received", P, "issuer recipient", ppf=True),
            _def("213", "Rejetée", "Rejected", T, "platform", _R213, required=True, ppf=True),
            _def("220", "Annulée", "Cancelled", P, "issuer"),
            _def("221", "Erreur de routage", "Routing error", T, "platform", "ROUTAGE_ERR"),
            _def("501", "Irrecevable", "Inadmissible", T, "platform", _R501, required=True),
        )
    }
)

# Allowed next statuses. None = the invoice has no status yet. Empty = terminal.
_NEXT: dict[str | None, str] = {
    None: "200 213 501",
    "200": "201 202 203 213 221 220",
    "201": "202 203 213 221 220",
    "202": "203 213 221 220",
    "203": "204 205 206 207 208 210 211 212 220",
    "204": "205 206 207 208 210 211 212 220",
    "205": "207 208 211 212 220",
    "206": "207 208 211 212 220",
    "207": "205 206 207 208 210 211 212 220",  # a new 207 replaces the dispute's reason
    "208": "208 209 210 220",
    "209": "204 205 206 207 208 210 211 212 220",
    "211": "207 212",
    "221": "203 220",  # re-routed once the directory is fixed, or cancelled
    "210": "",
    "212": "",
    "213": "",
    "220": "",
    "501": "",
}
NEXT: Mapping[str | None, frozenset[str]] = MappingProxyType(
    {current: frozenset(codes.split()) for current, codes in _NEXT.items()}
)
CONCENTRATOR_STATUSES: frozenset[str] = frozenset(code for code, s in STATUSES.items() if s.to_ppf)


@dataclass(frozen=True)
class Verdict:
    """The judgement of one status change: `refusal` None = allowed."""

    code: str
    refusal: str | None = None  # LC_* reason code
    message: str = ""

    @property
    def allowed(self) -> bool:
        return self.refusal is None


def label(code: str, lang: str = "fr") -> str:
    status = STATUSES.get(code)
    if status is None:
        return code
    return status.label_fr if lang == "fr" else status.label_en


def describe(code: str | None) -> str:
    return "no status" if code is None else f"{code} {label(code)}"


def transition(
    current: str | None,
    code: str,
    actor: Actor,
    reason_code: str | None = None,
    *,
    b2g: bool = False,
) -> Verdict:
    """May `actor` move an invoice whose current status is `current` to `code` with `reason_code`?"""
    status = STATUSES.get(code)
    if status is None:
        known = " ".join(STATUSES)
        return Verdict(
            code, LC_INVALID_STATUS, f"status code {code!r} is not one the gateway handles ({known})"
        )
    if actor not in status.actors:
        who = " or ".join(sorted(a.value for a in status.actors))
        return Verdict(
            code, LC_ACCESS_DENIED, f"status {describe(code)} is set by the {who}, not by the {actor.value}"
        )
    if current is not None and current not in NEXT:
        return Verdict(code, LC_STATUS_ERROR, f"the invoice's current status {current!r} is unknown")
    if code not in NEXT[current]:
        if current is not None and not NEXT[current]:
            why = f"the invoice is {describe(current)}, a final status: nothing may follow it"
        else:
            allowed = ", ".join(sorted(NEXT[current])) or "none"
            why = f"status {describe(code)} may not follow {describe(current)} (allowed next: {allowed})"
        return Verdict(code, LC_STATUS_ERROR, why)
    if reason_code is None:
        if status.reason_required:
            return Verdict(code, LC_RULE_ERROR, f"status {describe(code)} needs a reason code (BR-FR-CDV-15)")
        return Verdict(code)
    allowed_reasons = status.allowed_reasons(b2g)
    if reason_code not in allowed_reasons:
        scope = "any status (BR-FR-CDV-CL-09)" if reason_code not in ALL_REASONS else describe(code)
        return Verdict(
            code,
            LC_RULE_ERROR,
            f"reason {reason_code!r} is not allowed for {scope}; allowed: {', '.join(sorted(allowed_reasons))}",
        )
    return Verdict(code)
