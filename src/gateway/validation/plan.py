"""The validation plan: which rule-pack layers judge a document, as configuration (issue 4, issue 11).

Default plan (pack ids from `rulepacks.py`):

| syntax / profile (BT-24)                                   | layers, in order                                      |
|------------------------------------------------------------|-------------------------------------------------------|
| UBL Invoice / CreditNote (any CustomizationID)             | xsd: ubl-2.1-xsd → en16931: ubl-en16931 → br-fr: br-fr-ubl |
| UBL declaring `…#conformant#urn.cpro.gouv.fr:1p0:extended-ctc-fr` | xsd: ubl-2.1-xsd → extended-ctc-fr: extended-ctc-fr-ubl → br-fr: br-fr-ubl |
| CII Factur-X MINIMUM (`urn:factur-x.eu:1p0:minimum`, zugferd 2p0) | xsd + facturx-minimum: facturx-minimum (no BR-FR: not a full invoice) |
| CII Factur-X BASIC WL (`urn:factur-x.eu:1p0:basicwl`, zugferd 2p0) | xsd + facturx-basicwl: facturx-basicwl (no BR-FR) |
| CII Factur-X BASIC (`…#compliant#urn:factur-x.eu:1p0:basic`)  | xsd + facturx-basic: facturx-basic → br-fr: br-fr-cii |
| CII `urn:cen.eu:en16931:2017` in a PDF (Factur-X)          | xsd + en16931: facturx-en16931 → br-fr: br-fr-cii      |
| CII Factur-X EXTENDED (`…#conformant#urn:factur-x.eu:1p0:extended`) | xsd + facturx-extended: facturx-extended → br-fr: br-fr-cii |
| CII `…#conformant#urn.cpro.gouv.fr:1p0:extended-ctc-fr`    | xsd + extended-ctc-fr: extended-ctc-fr-cii (D22B) → br-fr: br-fr-cii |
| standalone CII (not in a PDF) with `urn:cen.eu:en16931:2017`, a non-Factur-X ID (XRechnung, ZUGFeRD 1 `…:comfort`), an unknown or no ID | xsd: facturx-en16931 (`en16931_cii_xsd_pack`) → en16931: `en16931_cii_pack` ("auto": cen-en16931 when installed, else facturx-en16931) → br-fr: br-fr-cii |
| CII in a PDF with a guideline ID that is not a Factur-X one | as Factur-X EN 16931 (facturx-en16931): it fires FX-SCH-A-000556, which is right for a Factur-X PDF |
| CDAR lifecycle message (issue 18)                          | xsd: br-fr-cdv (`cdar_pack`) → br-fr-cdv: br-fr-cdv   |

"Standalone" means container None or "zip" (an XML file); container "pdf" means Factur-X.
A layer whose pack is not available stays in the plan with `pack=None`: the report says it did not run and
the outcome is `not_validated`, never `valid`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from gateway.model import Syntax
from gateway.validation.rulepacks import RulePack, RulePackRegistry

AUTO = "auto"
CEN_PACK_ID = "cen-en16931"
FALLBACK_EN16931_CII_PACK = "facturx-en16931"
PDF_CONTAINERS = frozenset({"pdf"})


class ProfilePlan(BaseModel):
    """What runs for one declared profile: an XSD pack, a rules pack, and whether BR-FR applies."""

    model_config = ConfigDict(extra="forbid")

    layer: str  # report name of the rules layer, e.g. "en16931", "facturx-basic", "extended-ctc-fr"
    rules_pack: str
    xsd_pack: str | None = None  # CII: pack with role xsd-cii; UBL: taken from `ubl_xsd_pack`
    full_invoice: bool = True  # BR-FR applies only to full invoices (not MINIMUM / BASIC WL)


def _default_cii_profiles() -> dict[str, ProfilePlan]:
    def fx(name: str, full: bool = True) -> ProfilePlan:
        pack = f"facturx-{name}"
        return ProfilePlan(layer=pack, rules_pack=pack, xsd_pack=pack, full_invoice=full)

    en16931 = ProfilePlan(layer="en16931", rules_pack="facturx-en16931", xsd_pack="facturx-en16931")
    ctc = ProfilePlan(
        layer="extended-ctc-fr", rules_pack="extended-ctc-fr-cii", xsd_pack="extended-ctc-fr-cii"
    )
    return {
        "urn:factur-x.eu:1p0:minimum": fx("minimum", full=False),
        "urn:zugferd.de:2p0:minimum": fx("minimum", full=False),
        "urn:factur-x.eu:1p0:basicwl": fx("basicwl", full=False),
        "urn:zugferd.de:2p0:basicwl": fx("basicwl", full=False),
        "urn:cen.eu:en16931:2017#compliant#urn:factur-x.eu:1p0:basic": fx("basic"),
        "urn:cen.eu:en16931:2017#compliant#urn:zugferd.de:2p0:basic": fx("basic"),
        "urn:cen.eu:en16931:2017": en16931,
        "urn:cen.eu:en16931:2017#conformant#urn:factur-x.eu:1p0:extended": fx("extended"),
        "urn:cen.eu:en16931:2017#conformant#urn:zugferd.de:2p0:extended": fx("extended"),
        "urn:cen.eu:en16931:2017#conformant#urn.cpro.gouv.fr:1p0:extended-ctc-fr": ctc,
    }


def _default_ubl_profiles() -> dict[str, ProfilePlan]:
    return {
        "urn:cen.eu:en16931:2017#conformant#urn.cpro.gouv.fr:1p0:extended-ctc-fr": ProfilePlan(
            layer="extended-ctc-fr", rules_pack="extended-ctc-fr-ubl"
        )
    }


class PartnerValidation(BaseModel):
    """Per-partner overrides; None keeps the global value."""

    model_config = ConfigDict(extra="forbid")

    br_fr: bool | None = None
    en16931_cii_pack: str | None = None
    warning_packs: list[str] | None = None


class ValidationConfig(BaseModel):
    """Validation plan and worker-pool settings (config section `[validation]`)."""

    model_config = ConfigDict(extra="forbid")

    xsd: bool = True  # run the XSD layers (switch off only for diagnostics / engine comparisons)
    br_fr: bool = True  # French BR-FR Flux 2 rules on full invoices (UBL, CII BASIC/EN16931/EXTENDED)
    # Rules pack for standalone CII declaring urn:cen.eu:en16931:2017, a non-Factur-X guideline ID
    # (XRechnung, ZUGFeRD 1) or none: "auto" = cen-en16931 when installed, else facturx-en16931.
    # Any pack id forces that pack (a missing one makes the layer not run -> not_validated).
    en16931_cii_pack: str = AUTO
    en16931_cii_xsd_pack: str = "facturx-en16931"  # XSD for that case (CEN releases ship no XSD)
    ubl_xsd_pack: str = "ubl-2.1-xsd"
    ubl_en16931_pack: str = "ubl-en16931"
    br_fr_ubl_pack: str = "br-fr-ubl"
    br_fr_cii_pack: str = "br-fr-cii"
    cdar_pack: str = "br-fr-cdv"  # CDAR lifecycle messages: XSD + BR-FR-CDV rules (France_RFE release)
    cii_profiles: dict[str, ProfilePlan] = Field(default_factory=_default_cii_profiles)
    ubl_profiles: dict[str, ProfilePlan] = Field(default_factory=_default_ubl_profiles)
    # "Warnings packs": extra packs run after the plan in advisory mode: their findings are reported as
    # warnings and never reject; a failure to run them does not change the outcome.
    warning_packs: list[str] = Field(default_factory=list)
    partners: dict[str, PartnerValidation] = Field(default_factory=dict)
    # Process pool (pool.py)
    timeout_seconds: float = Field(default=30.0, gt=0)  # per document, compile time excluded
    compile_timeout_seconds: float = Field(default=300.0, gt=0)
    workers: int = Field(default=0, ge=0)  # 0 = os.cpu_count()
    max_tasks_per_worker: int = Field(
        default=2000, ge=1
    )  # then recycled (RSS stayed flat over 10,000: bench/README.md)
    start_method: str = Field(default="spawn", pattern="^(spawn|forkserver)$")
    preload: bool = False  # compile every available pack when a worker starts

    def for_partner(self, partner: str) -> ValidationConfig:
        override = self.partners.get(partner)
        if override is None:
            return self
        changes = {k: v for k, v in override.model_dump().items() if v is not None}
        return self.model_copy(update=changes)


@dataclass(frozen=True)
class PlannedLayer:
    name: str  # report name: "xsd", "en16931", "facturx-basic", "extended-ctc-fr", "br-fr", "warnings:<id>"
    pack_id: str  # requested id
    role: str  # xsd-invoice | xsd-creditnote | xsd-cii | schematron-ubl | schematron-cii
    pack: RulePack | None  # None: not available -> the layer does not run
    advisory: bool = False

    @property
    def is_xsd(self) -> bool:
        return self.role.startswith("xsd-")

    @property
    def missing_reason(self) -> str:
        return f"rule pack {self.pack_id!r} is not available"


@dataclass(frozen=True)
class ValidationPlan:
    syntax: Syntax
    profile: str | None
    container: str | None
    partner: str
    layers: tuple[PlannedLayer, ...]
    notes: tuple[str, ...] = ()  # why the plan looks like this (shown in reports)


def _layer(
    registry: RulePackRegistry, name: str, pack_id: str, role: str, advisory: bool = False
) -> PlannedLayer:
    pack = registry.find(pack_id)
    if pack is not None and role not in pack.layers:
        pack = None
    return PlannedLayer(name=name, pack_id=pack_id, role=role, pack=pack, advisory=advisory)


def resolve_en16931_cii_pack(config: ValidationConfig, registry: RulePackRegistry) -> tuple[str, str]:
    """(pack id, explanation) for standalone EN 16931 / non-Factur-X CII."""
    if config.en16931_cii_pack != AUTO:
        return config.en16931_cii_pack, f"en16931_cii_pack={config.en16931_cii_pack}"
    cen = registry.find(CEN_PACK_ID)
    if cen is not None and "schematron-cii" in cen.layers:
        return CEN_PACK_ID, f"en16931_cii_pack=auto: {cen.ref} is installed"
    return FALLBACK_EN16931_CII_PACK, f"en16931_cii_pack=auto: {CEN_PACK_ID} not installed"


def plan_for(
    config: ValidationConfig,
    registry: RulePackRegistry,
    syntax: Syntax,
    profile: str | None,
    container: str | None,
    partner: str,
) -> ValidationPlan:
    """The ordered layers that judge one document (pure apart from looking packs up)."""
    cfg = config.for_partner(partner)
    if syntax == Syntax.FACTURX_PDF:
        syntax, container = Syntax.CII, container or "pdf"
    profile_id = (profile or "").strip()
    layers: list[PlannedLayer] = []
    notes: list[str] = []
    full_invoice = True
    if syntax in (Syntax.UBL_INVOICE, Syntax.UBL_CREDITNOTE):
        role = "xsd-invoice" if syntax == Syntax.UBL_INVOICE else "xsd-creditnote"
        if cfg.xsd:
            layers.append(_layer(registry, "xsd", cfg.ubl_xsd_pack, role))
        special = cfg.ubl_profiles.get(profile_id)
        if special is not None:
            layers.append(_layer(registry, special.layer, special.rules_pack, "schematron-ubl"))
            full_invoice = special.full_invoice
        else:
            layers.append(_layer(registry, "en16931", cfg.ubl_en16931_pack, "schematron-ubl"))
        if cfg.br_fr and full_invoice:
            layers.append(_layer(registry, "br-fr", cfg.br_fr_ubl_pack, "schematron-ubl"))
        rules_role = "schematron-ubl"
    elif syntax == Syntax.CII:
        standalone = container not in PDF_CONTAINERS
        known = cfg.cii_profiles.get(profile_id)
        if standalone and (known is None or profile_id == "urn:cen.eu:en16931:2017"):
            pack_id, why = resolve_en16931_cii_pack(cfg, registry)
            kind = "EN 16931 core" if known is not None else "not a Factur-X profile"
            notes.append(f"standalone CII, guideline {profile_id or '(none)'!r} ({kind}): {why}")
            chosen = ProfilePlan(layer="en16931", rules_pack=pack_id, xsd_pack=cfg.en16931_cii_xsd_pack)
        elif known is None:
            notes.append(
                f"CII in a {container} with guideline {profile_id or '(none)'!r}, not a Factur-X profile: "
                "judged as Factur-X EN 16931"
            )
            chosen = cfg.cii_profiles.get("urn:cen.eu:en16931:2017") or ProfilePlan(
                layer="en16931", rules_pack="facturx-en16931", xsd_pack="facturx-en16931"
            )
        else:
            chosen = known
        if cfg.xsd and chosen.xsd_pack:
            layers.append(_layer(registry, "xsd", chosen.xsd_pack, "xsd-cii"))
        layers.append(_layer(registry, chosen.layer, chosen.rules_pack, "schematron-cii"))
        full_invoice = chosen.full_invoice
        if cfg.br_fr and full_invoice:
            layers.append(_layer(registry, "br-fr", cfg.br_fr_cii_pack, "schematron-cii"))
        elif cfg.br_fr:
            notes.append("BR-FR not applied: the profile does not carry a full invoice")
        rules_role = "schematron-cii"
    elif syntax == Syntax.CDAR:
        # Lifecycle message (issue 18): CDAR D22B XSD, then the BR-FR-CDV rules (fatal set).
        if cfg.xsd:
            layers.append(_layer(registry, "xsd", cfg.cdar_pack, "xsd-cdar"))
        layers.append(_layer(registry, "br-fr-cdv", cfg.cdar_pack, "schematron-cdar"))
        return ValidationPlan(syntax, profile, container, partner, tuple(layers), tuple(notes))
    else:
        notes.append(f"no validation plan for syntax {syntax}")
        return ValidationPlan(syntax, profile, container, partner, (), tuple(notes))
    for pack_id in cfg.warning_packs:
        layers.append(_layer(registry, f"warnings:{pack_id}", pack_id, rules_role, advisory=True))
    return ValidationPlan(syntax, profile, container, partner, tuple(layers), tuple(notes))
