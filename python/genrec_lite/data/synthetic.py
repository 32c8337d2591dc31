"""A built-in synthetic e-commerce data set: industrial and scientific supplies.

``make_synthetic()`` builds, from one seed and nothing else (numpy's ``Generator``), a catalog of
products with realistic titles ("Ironclad 20V Max Cordless Drill/Driver, 1/2-Inch Chuck,
Yellow"), brand, description, categories and price; users with profiles (age band, occupation,
account type); and purchase sequences with timestamps.

How sequences are made, so that they carry signal a sequence model can learn:

- *Long-term taste.* A user's occupation sets the categories they buy from (an electrician buys
  electrical supplies and safety gear, a lab technician lab supplies), plus a favourite brand per
  category and a price tier that leans on age and occupation.
- *Short-term transitions.* Most purchases follow from a recent one: a drill leads to drill bits,
  a battery of the same brand and voltage, screws, safety glasses; a circular saw to blades that
  fit it; a pipette to its tips. The compatible, same-brand accessory is strongly preferred, so
  the last item (and, less often, the one before) predicts the next.
- *Repeat purchases* of consumables (gloves, tape, pipette tips, masks).
- Item popularity is skewed (log-normal), so popularity is a real, but weak, baseline.

The data set has no evaluation cases: use ``leave_one_out`` (or ``temporal_split``) on it.
The defaults (600 items, 1,000 users, about 12 interactions each) build in well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidArgumentError
from .catalog import Catalog
from .dataset import Dataset
from .interactions import Interactions
from .profiles import UserProfiles

# ----------------------------------------------------------------------------- the world

_ROOT = "Industrial & Scientific"

# brand: (tier 0 budget / 1 mid / 2 premium, colour of its tools)
_BRANDS = {
    "Ironclad": (2, "Yellow"), "VoltEdge": (1, "Teal"), "Torqmaster": (2, "Red"),
    "BuildRite": (0, "Orange"), "Kestrel": (1, "Blue"),
    "Bitmaster": (0, ""), "Precisa": (1, ""),
    "Fastline": (0, ""), "Hexworth": (1, ""), "SteelCore": (1, ""), "Anchorpoint": (2, ""),
    "Guardline": (1, ""), "SafeShield": (0, ""), "ProVisor": (2, ""), "Northwall": (1, ""),
    "Wirecraft": (1, ""), "Ampere Pro": (2, ""), "Circuitline": (0, ""), "Lumenex": (1, ""),
    "LabPrime": (2, ""), "Scientia": (1, ""), "Kemtek": (1, ""), "ClearLab": (0, ""),
}
_TOOL_BRANDS = ["Ironclad", "VoltEdge", "Torqmaster", "BuildRite", "Kestrel"]
_ACCESSORY_BRANDS = _TOOL_BRANDS + ["Bitmaster", "Precisa"]
_CATEGORY_BRANDS = {
    "Power Tools": _TOOL_BRANDS,
    "Power Tool Accessories": _ACCESSORY_BRANDS,
    "Fasteners": ["Fastline", "Hexworth", "SteelCore", "Anchorpoint"],
    "Safety Gear": ["Guardline", "SafeShield", "ProVisor", "Northwall"],
    "Electrical": ["Wirecraft", "Ampere Pro", "Circuitline", "Lumenex"],
    "Lab Equipment": ["LabPrime", "Scientia", "Kemtek", "ClearLab"],
}
CATEGORIES = tuple(_CATEGORY_BRANDS)

_VOLT = ["12V Max", "18V", "20V Max"]
_BLADE = ["6-1/2-Inch", "7-1/4-Inch"]
_DISC = ["4-1/2-Inch", "5-Inch"]
_TIP_VOL = ["10 uL", "200 uL", "1000 uL"]
_MATERIAL_STEEL = ["Zinc-Plated Steel", "Stainless Steel", "Black Phosphate Steel"]


@dataclass(frozen=True)
class _Type:
    key: str
    category: str
    sub: str
    title: str               # a str.format pattern over the attributes (and {color})
    attrs: dict              # name -> list of choices
    price: float             # typical mid-tier price in dollars
    weight: float            # share of the assortment and of "fresh" purchases
    consumable: bool = False
    compat: str | None = None  # attribute that must match for accessories ("platform" = brand+V)
    features: tuple = ()


_TYPES: tuple[_Type, ...] = (
    # Power tools
    _Type("drill", "Power Tools", "Drills", "{voltage} Cordless Drill/Driver, {chuck} Chuck, "
          "{color}", {"voltage": _VOLT, "chuck": ["3/8-Inch", "1/2-Inch"]}, 119, 3.0,
          compat="platform", features=('a two-speed transmission', 'an LED work light',
                                       'a keyless ratcheting chuck', 'a brushless motor')),
    _Type("impact", "Power Tools", "Impact Drivers", "{voltage} Brushless Impact Driver, "
          "1/4-Inch Hex, {modes}-Speed, {color}", {"voltage": _VOLT, "modes": ["2", "3"]}, 139,
          2.0, compat="platform", features=('up to 1,800 in-lbs of torque', 'a compact head',
                                             'a belt hook')),
    _Type("circsaw", "Power Tools", "Saws", "{voltage} Cordless Circular Saw, {blade} Blade, "
          "{color}", {"voltage": _VOLT, "blade": _BLADE}, 159, 1.5, compat="platform",
          features=('an electric brake', 'bevel capacity to 50 degrees', 'a dust blower')),
    _Type("grinder", "Power Tools", "Grinders", "{voltage} Angle Grinder, {disc} Disc, "
          "Paddle Switch, {color}", {"voltage": _VOLT, "disc": _DISC}, 109, 1.2,
          compat="platform", features=('a tool-free guard', 'an anti-kickback clutch',
                                       'a side handle')),
    _Type("sander", "Power Tools", "Sanders", "{voltage} Random Orbit Sander, 5-Inch Pad, "
          "Variable Speed, {color}", {"voltage": _VOLT}, 89, 1.0, compat="platform",
          features=('a dust bag', 'a low-vibration pad', 'a lock-on switch')),
    _Type("battery", "Power Tools", "Batteries & Chargers", "{voltage} {ah}Ah Lithium-Ion "
          "Battery Pack, {color}", {"voltage": _VOLT, "ah": ["2.0", "4.0", "5.0", "6.0"]}, 79,
          1.6, compat="platform", features=('a fuel gauge', 'a shock-absorbing housing')),
    _Type("charger", "Power Tools", "Batteries & Chargers", "{voltage} Rapid Battery Charger, "
          "{color}", {"voltage": _VOLT}, 49, 0.8, compat="platform",
          features=('one-hour charging of a 4.0Ah pack', 'wall-mount slots')),
    # Accessories
    _Type("drillbits", "Power Tool Accessories", "Drill Bits", "{count}-Piece {material} "
          "Drill Bit Set, 1/16 to {top}-Inch", {"count": ["13", "21", "29"], "material":
                                                ["Titanium-Coated", "Cobalt", "Black Oxide"],
                                                "top": ["1/4", "3/8", "1/2"]}, 29, 2.0,
          features=('135-degree split points', 'a hard storage case',
                    'bits for wood, metal and plastic')),
    _Type("driverbits", "Power Tool Accessories", "Driver Bits", "{count}-Piece Impact Driver "
          "Bit Set, {finish}", {"count": ["30", "45", "70"], "finish": ["Black Oxide",
                                                                     "Titanium Nitride"]},
          24, 1.6, features=('a magnetic bit holder', 'color-coded storage')),
    _Type("sawblade", "Power Tool Accessories", "Saw Blades", "{blade} {teeth}-Tooth Carbide "
          "Circular Saw Blade, {pack}", {"blade": _BLADE, "teeth": ["24", "40", "60"],
                                         "pack": ["Single", "2-Pack"]}, 19, 1.4,
          consumable=True, compat="blade", features=('a thin kerf', 'an anti-stick coating')),
    _Type("grindwheel", "Power Tool Accessories", "Abrasives", "{disc} {kind} Wheels, "
          "{count}-Pack", {"disc": _DISC, "kind": ["Cut-Off", "Grinding", "Flap"],
                           "count": ["5", "10", "25"]}, 17, 1.3, consumable=True,
          compat="disc", features=('aluminum-oxide grain', 'a rating for steel and stainless')),
    _Type("sanddisc", "Power Tool Accessories", "Abrasives", "5-Inch {grit} Grit "
          "Hook-and-Loop Sanding Discs, {count}-Pack", {"grit": ["80", "120", "220"],
                                                        "count": ["25", "50", "100"]}, 15, 1.2,
          consumable=True, features=('an 8-hole pattern', 'a clog-resistant coating')),
    # Fasteners
    _Type("woodscrews", "Fasteners", "Screws", "#{gauge} x {length} {material} Wood Screws, "
          "{head} Head, {count}-Count", {"gauge": ["6", "8", "10"],
                                         "length": ["1-Inch", "1-1/4-Inch", "2-Inch",
                                                    "3-Inch"],
                                         "material": _MATERIAL_STEEL,
                                         "head": ["Flat", "Pan", "Star Drive"],
                                         "count": ["100", "250", "500"]}, 12, 3.0,
          consumable=True, features=('type 17 auger points', 'a corrosion-resistant finish')),
    _Type("anchors", "Fasteners", "Anchors", "{size} Self-Drilling Drywall Anchors with "
          "Screws, {count}-Pack", {"size": ["#6", "#8", "#10"],
                                   "count": ["25", "50", "100"]}, 11, 1.5, consumable=True,
          features=('a 75 lb rating', 'no pre-drilling needed')),
    _Type("hexbolts", "Fasteners", "Bolts", "{size} x {length} Hex Bolts, {material}, "
          "{count}-Pack", {"size": ["1/4-20", "5/16-18", "3/8-16"],
                           "length": ["1-Inch", "2-Inch", "3-Inch"],
                           "material": _MATERIAL_STEEL, "count": ["10", "25", "50"]}, 14, 2.0,
          consumable=True, compat="size", features=('full threads', 'grade 5 strength')),
    _Type("nuts", "Fasteners", "Nuts", "{size} Hex Nuts, {material}, {count}-Pack",
          {"size": ["1/4-20", "5/16-18", "3/8-16"], "material": _MATERIAL_STEEL,
           "count": ["25", "50", "100"]}, 9, 1.5, consumable=True, compat="size",
          features=('coarse threads',)),
    _Type("washers", "Fasteners", "Washers", "{size} Flat Washers, {material}, {count}-Pack",
          {"size": ["1/4-20", "5/16-18", "3/8-16"], "material": _MATERIAL_STEEL,
           "count": ["50", "100"]}, 8, 1.2, consumable=True, compat="size",
          features=('an SAE pattern',)),
    # Safety gear
    _Type("glasses", "Safety Gear", "Eye Protection", "Safety Glasses, Anti-Fog {lens} Lens, "
          "ANSI Z87.1, {count}-Pack", {"lens": ["Clear", "Smoke", "Amber", "Mirror"],
                                       "count": ["1", "3", "12"]}, 14, 2.0, consumable=True,
          features=('a wraparound frame', 'a scratch-resistant coating')),
    _Type("gloves", "Safety Gear", "Hand Protection", "{material} Work Gloves, Size {size}, "
          "{count} Pairs", {"material": ["Nitrile-Coated", "Leather", "Cut-Resistant"],
                            "size": ["M", "L", "XL"], "count": ["3", "6", "12"]}, 18, 2.0,
          consumable=True, features=('touchscreen fingertips', 'a knit wrist')),
    _Type("earmuffs", "Safety Gear", "Hearing Protection", "Ear Muffs, NRR {nrr}dB, {color}",
          {"nrr": ["25", "28", "31"], "color": ["Black", "Red", "Hi-Vis Green"]}, 22, 1.0,
          features=('a padded headband', 'a fold-flat design')),
    _Type("respirator", "Safety Gear", "Respiratory Protection", "N95 Respirator Masks, "
          "{valve}, {count}-Pack", {"valve": ["With Valve", "No Valve"],
                                    "count": ["10", "20", "50"]}, 19, 1.4, consumable=True,
          features=('NIOSH approval', 'an adjustable nose clip')),
    _Type("hardhat", "Safety Gear", "Head Protection", "Hard Hat, {ratchet} Suspension, "
          "{color}", {"ratchet": ["4-Point Ratchet", "6-Point Ratchet"],
                      "color": ["White", "Yellow", "Orange", "Blue"]}, 24, 0.9,
          features=('an ANSI Type I Class E rating',)),
    _Type("vest", "Safety Gear", "High Visibility", "High-Visibility Safety Vest, Class 2, "
          "{color}, Size {size}", {"color": ["Lime", "Orange"], "size": ["M", "L", "XL", "2XL"]},
          13, 0.9, features=('reflective strips', 'a zipper front', 'five pockets')),
    # Electrical
    _Type("tester", "Electrical", "Testers", "Non-Contact Voltage Tester, {range}, "
          "with Flashlight", {"range": ["12-1000V", "48-1000V", "90-1000V"]}, 21, 1.5,
          features=('an audible and visual alarm', 'a pocket clip')),
    _Type("multimeter", "Electrical", "Meters", "Digital Multimeter, True RMS, {counts} Counts, "
          "Auto-Ranging", {"counts": ["2000", "6000", "20000"]}, 45, 1.0,
          features=('a backlit display', 'capacitance and frequency ranges')),
    _Type("stripper", "Electrical", "Hand Tools", "Wire Stripper and Cutter, {awg} AWG, "
          "Spring-Loaded", {"awg": ["10-18", "12-22", "16-26"]}, 17, 1.4,
          features=('comfort-grip handles', 'a crimping jaw')),
    _Type("connectors", "Electrical", "Connectors", "Twist-On Wire Connectors, {assort}, "
          "{count}-Pack", {"assort": ["Assorted Colors", "Yellow", "Red"],
                           "count": ["100", "200", "500"]}, 12, 1.6, consumable=True,
          features=('UL listing', 'a square-wire spring')),
    _Type("tape", "Electrical", "Tape", "Vinyl Electrical Tape, 3/4-Inch x {length} ft, "
          "{color}, {count}-Pack", {"length": ["60", "66"], "color": ["Black", "Assorted"],
                                    "count": ["3", "10"]}, 9, 1.6, consumable=True,
          features=('a flame-retardant backing', 'a 600V rating')),
    _Type("extcord", "Electrical", "Cords", "{length} ft Extension Cord, {gauge} Gauge, "
          "{outlets}-Outlet, {color}", {"length": ["25", "50", "100"],
                                        "gauge": ["12", "14", "16"], "outlets": ["1", "3"],
                                        "color": ["Orange", "Yellow", "Green"]}, 32, 1.2,
          features=('a lighted end', 'an outdoor-rated jacket')),
    _Type("heatshrink", "Electrical", "Connectors", "Heat Shrink Tubing Kit, {count} Pieces, "
          "{ratio} Ratio", {"count": ["180", "328", "560"], "ratio": ["2:1", "3:1"]}, 11, 1.0,
          consumable=True, features=('adhesive lining', 'assorted sizes')),
    # Lab equipment
    _Type("beaker", "Lab Equipment", "Glassware", "Borosilicate Glass Beakers, {sizes}, "
          "{count}-Pack", {"sizes": ["50-1000 mL", "100-500 mL", "250 mL"],
                           "count": ["3", "6", "12"]}, 26, 1.6,
          features=('graduated markings', 'heat-resistant glass')),
    _Type("stirrer", "Lab Equipment", "Stirrers & Hot Plates", "Magnetic Stirrer with Hot "
          "Plate, {cap} Capacity, Up to {rpm} RPM", {"cap": ["1 L", "3 L", "5 L"],
                                                     "rpm": ["1500", "2000"]}, 149, 0.9,
          features=('a ceramic top plate', 'digital temperature control')),
    _Type("stirbars", "Lab Equipment", "Stirrers & Hot Plates", "PTFE Magnetic Stir Bars, "
          "{shape}, {count}-Pack", {"shape": ["Assorted", "Octagonal", "Egg-Shaped"],
                                    "count": ["10", "20"]}, 16, 1.0, consumable=True,
          features=('a chemically inert coating',)),
    _Type("pipette", "Lab Equipment", "Pipettes", "Adjustable Micropipette, {vol} Max, "
          "Single Channel", {"vol": _TIP_VOL}, 89, 1.0, compat="vol",
          features=('an autoclavable lower part', 'a volume lock')),
    _Type("pipettetips", "Lab Equipment", "Pipettes", "Universal Pipette Tips, {vol}, "
          "{sterile}, {count}-Pack", {"vol": _TIP_VOL, "sterile": ["Sterile", "Non-Sterile"],
                                      "count": ["960", "1000"]}, 29, 1.6, consumable=True,
          compat="vol", features=('racked packaging', 'low-retention surfaces')),
    _Type("examgloves", "Lab Equipment", "Lab Safety", "Nitrile Exam Gloves, Powder-Free, "
          "Size {size}, {count}-Count", {"size": ["S", "M", "L", "XL"], "count": ["100", "200"]},
          15, 1.8, consumable=True, features=('a latex-free formula', 'textured fingertips')),
    _Type("scale", "Lab Equipment", "Balances", "Digital Lab Scale, {cap} x {res}",
          {"cap": ["200 g", "500 g", "3000 g"], "res": ["0.01 g", "0.1 g"]}, 69, 0.9,
          features=('a tare function', 'a calibration weight')),
    _Type("petri", "Lab Equipment", "Consumables", "Sterile Petri Dishes, {size}, "
          "{count}-Pack", {"size": ["60 mm", "90 mm", "100 mm"], "count": ["20", "100"]},
          18, 1.3, consumable=True, features=('polystyrene construction', 'vented lids')),
    _Type("testtubes", "Lab Equipment", "Glassware", "Glass Test Tubes, {size}, {count}-Pack",
          {"size": ["12x75 mm", "16x100 mm", "25x150 mm"], "count": ["24", "72"]}, 16, 1.0,
          consumable=True, features=('rimless tops', 'borosilicate 3.3 glass')),
)

_COMPLEMENTS: dict[str, list[tuple[str, float]]] = {
    "drill": [("drillbits", 3), ("driverbits", 2), ("battery", 2), ("woodscrews", 2),
              ("glasses", 1), ("charger", 1)],
    "impact": [("driverbits", 3), ("battery", 2), ("woodscrews", 2), ("hexbolts", 1)],
    "circsaw": [("sawblade", 4), ("glasses", 2), ("earmuffs", 1), ("battery", 1)],
    "grinder": [("grindwheel", 4), ("glasses", 2), ("gloves", 2), ("respirator", 1)],
    "sander": [("sanddisc", 5), ("respirator", 2), ("glasses", 1)],
    "battery": [("charger", 3), ("drill", 1), ("impact", 1)],
    "charger": [("battery", 2), ("impact", 1)],
    "drillbits": [("woodscrews", 2), ("anchors", 2), ("glasses", 1)],
    "driverbits": [("woodscrews", 3), ("impact", 1)],
    "sawblade": [("glasses", 1), ("earmuffs", 1), ("sawblade", 1)],
    "grindwheel": [("gloves", 2), ("glasses", 1)],
    "sanddisc": [("respirator", 2), ("sanddisc", 1)],
    "woodscrews": [("anchors", 1), ("washers", 1), ("driverbits", 1)],
    "anchors": [("woodscrews", 2), ("drillbits", 1)],
    "hexbolts": [("nuts", 3), ("washers", 3)],
    "nuts": [("washers", 2), ("hexbolts", 1)],
    "washers": [("nuts", 2), ("hexbolts", 1)],
    "glasses": [("gloves", 2), ("earmuffs", 1)],
    "gloves": [("glasses", 2), ("respirator", 1)],
    "earmuffs": [("glasses", 1), ("hardhat", 1)],
    "respirator": [("glasses", 1), ("gloves", 1)],
    "hardhat": [("vest", 3), ("glasses", 1)],
    "vest": [("hardhat", 1), ("gloves", 1)],
    "tester": [("stripper", 3), ("connectors", 2), ("multimeter", 1)],
    "multimeter": [("tester", 1), ("stripper", 1)],
    "stripper": [("connectors", 3), ("tape", 2)],
    "connectors": [("tape", 3), ("heatshrink", 1)],
    "tape": [("connectors", 1), ("heatshrink", 1)],
    "extcord": [("tape", 1), ("tester", 1)],
    "heatshrink": [("stripper", 1), ("tape", 1)],
    "beaker": [("stirrer", 2), ("stirbars", 2), ("scale", 1)],
    "stirrer": [("stirbars", 4), ("beaker", 2)],
    "stirbars": [("beaker", 1)],
    "pipette": [("pipettetips", 5)],
    "pipettetips": [("examgloves", 2), ("petri", 1)],
    "examgloves": [("pipettetips", 2), ("petri", 1), ("glasses", 1)],
    "scale": [("beaker", 1)],
    "petri": [("examgloves", 2), ("pipettetips", 2)],
    "testtubes": [("beaker", 1), ("examgloves", 1)],
}

# occupation: (share of users, category weights, share with a business account, tier lean)
_OCCUPATIONS = {
    "carpenter": (0.16, {"Power Tools": 3.5, "Power Tool Accessories": 2.5, "Fasteners": 2.5,
                         "Safety Gear": 1.5}, 0.7, 0.4),
    "electrician": (0.15, {"Electrical": 5.5, "Safety Gear": 2.0, "Power Tools": 1.5,
                           "Fasteners": 1.0}, 0.75, 0.4),
    "lab technician": (0.13, {"Lab Equipment": 7.0, "Safety Gear": 2.0, "Electrical": 1.0},
                       0.85, 0.2),
    "research scientist": (0.08, {"Lab Equipment": 8.0, "Safety Gear": 1.0, "Electrical": 1.0},
                           0.9, 0.8),
    "maintenance technician": (0.14, {"Power Tools": 2.0, "Electrical": 2.5, "Fasteners": 2.5,
                                      "Safety Gear": 2.0, "Power Tool Accessories": 1.0},
                               0.8, 0.0),
    "general contractor": (0.12, {"Power Tools": 3.0, "Power Tool Accessories": 2.0,
                                  "Fasteners": 2.0, "Safety Gear": 2.0, "Electrical": 1.0},
                           0.8, 0.6),
    "diy homeowner": (0.22, {"Power Tools": 3.0, "Power Tool Accessories": 2.0,
                             "Fasteners": 3.0, "Electrical": 1.0, "Safety Gear": 1.0},
                      0.05, -0.5),
}
_AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
_AGE_SHARE = (0.10, 0.27, 0.25, 0.20, 0.12, 0.06)
_AGE_TIER_LEAN = (-0.8, -0.3, 0.1, 0.4, 0.5, 0.3)
_TIER_NAMES = ("budget", "mid-range", "premium")
_TIER_PRICE = (0.7, 1.0, 1.45)
_TIER_LINES = (
    "Good value for occasional jobs around the house.",
    "A dependable choice for the trade and the home workshop.",
    "Built for daily professional use and backed by a 3-year warranty.",
)

_T0 = 1_577_836_800  # 2020-01-01 UTC


@dataclass(frozen=True)
class _Item:
    type_index: int
    brand: str
    tier: int
    attrs: tuple          # sorted (name, value) pairs
    compat: str | None
    title: str
    price: float


def _pick(rng: np.random.Generator, cdf: np.ndarray) -> int:
    """An index drawn with probabilities proportional to the steps of ``cdf`` (a cumsum)."""
    return min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), len(cdf) - 1)


def _choose(rng: np.random.Generator, options: list | tuple, p: np.ndarray | None = None):
    if p is None:
        return options[int(rng.integers(len(options)))]
    return options[_pick(rng, np.cumsum(p))]


def _allocate(total: int, weights: np.ndarray) -> np.ndarray:
    """Split ``total`` into integer shares proportional to ``weights`` (largest remainder)."""
    raw = weights / weights.sum() * total
    counts = np.floor(raw).astype(np.int64)
    rest = total - int(counts.sum())
    if rest > 0:
        order = np.lexsort((np.arange(len(raw)), -(raw - counts)))
        counts[order[:rest]] += 1
    return counts


def _make_items(rng: np.random.Generator, n_items: int) -> list[_Item]:
    counts = _allocate(n_items, np.array([t.weight for t in _TYPES]))
    items: list[_Item] = []
    seen: set = set()
    for ti, (t, count) in enumerate(zip(_TYPES, counts.tolist())):
        brands = _CATEGORY_BRANDS[t.category]
        if t.key in ("battery", "charger"):
            brands = _TOOL_BRANDS
        for _ in range(count):
            brand = _choose(rng, brands)
            tier, color = _BRANDS[brand]
            attrs = {name: _choose(rng, choices) for name, choices in sorted(t.attrs.items())}
            if "color" not in attrs:
                attrs["color"] = color
            key = (t.key, brand, tuple(sorted(attrs.items())))
            model = ""
            if key in seen or rng.random() < 0.35:  # a model number keeps titles distinct
                model = f"{brand[:2].upper()}-{int(rng.integers(100, 9999))}"
            seen.add(key)
            body = t.title.format(**attrs)
            title = f"{brand} {model + ' ' if model else ''}{body}"
            if t.compat == "platform":
                compat = f"platform:{brand}:{attrs['voltage']}"
            elif t.compat is not None:
                compat = f"{t.compat}:{attrs[t.compat]}"
            else:
                compat = None
            price = t.price * _TIER_PRICE[tier] * float(rng.lognormal(0.0, 0.2))
            items.append(_Item(ti, brand, tier, tuple(sorted(attrs.items())), compat, title,
                               round(price, 0) - 0.01 if price > 2 else round(price, 2)))
    # distinct titles: number any remaining repeats
    titles: dict[str, int] = {}
    for i, it in enumerate(items):
        if it.title in titles:
            extra = f"{it.brand[:2].upper()}-{1000 + i}"
            items[i] = _Item(it.type_index, it.brand, it.tier, it.attrs, it.compat,
                             it.title.replace(it.brand, f"{it.brand} {extra}", 1), it.price)
        titles[items[i].title] = i
    return items


_FITS = {
    "blade": "Fits {value} circular saws.",
    "disc": "Fits {value} angle grinders.",
    "vol": "For {value} micropipettes.",
    "size": "Matches {value} bolts, nuts and washers.",
}


def _describe(rng: np.random.Generator, it: _Item) -> str:
    t = _TYPES[it.type_index]
    attrs = dict(it.attrs)
    feats = list(t.features)
    k = min(len(feats), 2)
    picked = [feats[j] for j in sorted(rng.choice(len(feats), size=k, replace=False).tolist())]
    noun = t.title.split(",")[0].format(**attrs).strip()
    first = f"{it.brand} {noun}"
    parts = [first + (" with " + " and ".join(picked) if picked else "") + "."]
    if t.compat == "platform":
        if t.key in ("battery", "charger"):
            parts.append(f"Works with every {it.brand} {attrs['voltage']} cordless tool.")
        else:
            parts.append(f"Part of the {it.brand} {attrs['voltage']} cordless system; "
                         "battery and charger sold separately.")
    elif t.compat is not None:
        parts.append(_FITS[t.compat].format(value=attrs[t.compat]))
    if t.consumable:
        parts.append("Sold in trade packs for regular restocking.")
    parts.append(_TIER_LINES[it.tier])
    return " ".join(parts)


def make_synthetic(n_items: int = 600, n_users: int = 1000, *, seed: int = 0,
                   mean_length: float = 12.0, min_length: int = 5, max_length: int = 60,
                   p_complement: float = 0.6, p_repeat: float = 0.06,
                   name: str = "synthetic") -> Dataset:
    """Build the synthetic data set; the same arguments always give the same data set.

    ``p_complement``: chance that a purchase follows from a recent one (an accessory or a
    companion product); ``p_repeat``: chance of re-buying a consumable; otherwise the user picks
    from their long-term taste. Sequence lengths are ``min_length`` plus a geometric number with
    mean ``mean_length - min_length`` (capped at ``max_length``).
    """
    if n_items < 1 or n_users < 1:
        raise InvalidArgumentError(f"n_items and n_users must be >= 1, got {n_items}, "
                                   f"{n_users}")
    if not (1 <= min_length <= max_length) or mean_length < min_length:
        raise InvalidArgumentError(
            f"need 1 <= min_length <= max_length and mean_length >= min_length, got "
            f"{min_length}, {max_length}, {mean_length}")
    if not (0 <= p_complement and 0 <= p_repeat and p_complement + p_repeat <= 1):
        raise InvalidArgumentError("p_complement and p_repeat must be probabilities summing "
                                   "to at most 1")
    rng = np.random.default_rng(seed)

    # ---- catalog
    items = _make_items(rng, n_items)
    perm = rng.permutation(len(items))
    items = [items[i] for i in perm.tolist()]
    n = len(items)
    type_of = np.array([it.type_index for it in items], dtype=np.int64)
    tier_of = np.array([it.tier for it in items], dtype=np.int64)
    brand_names = list(_BRANDS)
    brand_of = np.array([brand_names.index(it.brand) for it in items], dtype=np.int64)
    popularity = rng.lognormal(0.0, 1.0, size=n)
    records = []
    for i, it in enumerate(items):
        t = _TYPES[it.type_index]
        records.append({
            "item_id": i, "title": it.title, "brand": it.brand,
            "description": _describe(rng, it),
            "categories": f"{_ROOT} > {t.category} > {t.sub}",
            "price": f"{it.price:.2f}",
        })
    catalog = Catalog.from_records(records)

    type_keys = [t.key for t in _TYPES]
    items_of_type = [np.flatnonzero(type_of == k) for k in range(len(_TYPES))]
    compat_names = sorted({it.compat for it in items if it.compat is not None})
    compat_of = np.array([-1 if it.compat is None else compat_names.index(it.compat)
                          for it in items], dtype=np.int64)
    type_weight = np.array([_TYPES[k].weight for k in type_of.tolist()])
    category_index = {c: k for k, c in enumerate(CATEGORIES)}
    cat_of_type = np.array([category_index[t.category] for t in _TYPES])
    cat_of_item = cat_of_type[type_of]
    consumable = np.array([_TYPES[k].consumable for k in type_of.tolist()], dtype=bool)
    complements = []
    for t in _TYPES:
        pairs = [(type_keys.index(k), w) for k, w in _COMPLEMENTS.get(t.key, [])
                 if len(items_of_type[type_keys.index(k)])]
        complements.append(pairs)

    # ---- users
    occ_names = list(_OCCUPATIONS)
    occ_share = np.array([_OCCUPATIONS[o][0] for o in occ_names])
    occ_share /= occ_share.sum()
    width = max(5, len(str(n_users)))
    age_cdf = np.cumsum(_AGE_SHARE)
    profiles = []
    sequences: list[tuple[str, list[int], list[int]]] = []
    span = 540 * 86400
    for u in range(n_users):
        uid = f"U{u:0{width}d}"
        occ = _choose(rng, occ_names, occ_share)
        _, cat_w, p_business, tier_lean = _OCCUPATIONS[occ]
        age_k = _pick(rng, age_cdf)
        account = "business" if rng.random() < p_business else "personal"
        profiles.append({"user_id": uid, "age_band": _AGE_BANDS[age_k], "occupation": occ,
                         "account_type": account})
        # taste: category weights with personal noise, a favourite brand per category, a tier
        base = np.array([cat_w.get(c, 0.15) for c in CATEGORIES], dtype=float)
        cats = base * rng.gamma(2.0, 0.5, size=len(base))
        lean = tier_lean + _AGE_TIER_LEAN[age_k] + float(rng.normal(0, 0.6))
        tier_pref = np.exp(-0.9 * (np.arange(3) - (1 + lean)) ** 2)
        fav_brand = np.array([brand_names.index(_choose(rng, _CATEGORY_BRANDS[c]))
                              for c in CATEGORIES])
        taste_w = (popularity * cats[cat_of_item] * tier_pref[tier_of] * type_weight
                   * np.where(brand_of == fav_brand[cat_of_item], 4.0, 1.0))
        taste_cdf = np.cumsum(taste_w)
        extra = int(rng.geometric(1.0 / max(1.0, mean_length - min_length + 1))) - 1
        length = min(max_length, min_length + extra)
        seq: list[int] = []
        times: list[int] = []
        t_now = _T0 + int(rng.integers(0, span))
        for step in range(length):
            r = rng.random()
            nxt = -1
            if step > 0 and r < p_complement:
                src = seq[-1] if (len(seq) < 2 or rng.random() < 0.8) else seq[-2]
                pairs = complements[type_of[src]]
                if pairs:
                    kinds = [k for k, _ in pairs]
                    w = np.array([wt for _, wt in pairs], dtype=float)
                    k = kinds[_pick(rng, np.cumsum(w))]
                    cand = items_of_type[k]
                    cw = popularity[cand] * tier_pref[tier_of[cand]]
                    same_brand = brand_of[cand] == brand_of[src]
                    cw = cw * np.where(same_brand, 4.0, 1.0)
                    if compat_of[src] >= 0:
                        cw = cw * np.where(compat_of[cand] == compat_of[src], 25.0, 1.0)
                    nxt = int(cand[_pick(rng, np.cumsum(cw))])
                gap = rng.exponential(3 * 3600)
            elif step > 0 and r < p_complement + p_repeat:
                bought = [i for i in seq if consumable[i]]
                if bought:
                    nxt = bought[int(rng.integers(len(bought)))]
                gap = rng.exponential(20 * 86400)
            else:
                gap = rng.exponential(12 * 86400)
            if nxt < 0:
                nxt = _pick(rng, taste_cdf)
            if step > 0:
                t_now += 60 + int(gap)
            seq.append(nxt)
            times.append(t_now)
        sequences.append((uid, seq, times))

    # ---- the interaction log, in time order (ties: user order, then sequence order)
    users = np.array([uid for uid, seq, _ in sequences for _ in seq])
    item_ids = np.array([i for _, seq, _ in sequences for i in seq], dtype=np.int64)
    stamps = np.array([t for _, _, ts in sequences for t in ts], dtype=np.int64)
    order = np.argsort(stamps, kind="stable")
    inter = Interactions(users[order], item_ids[order], stamps[order])
    return Dataset(name, catalog, inter, UserProfiles.from_records(profiles))
