#!/usr/bin/python3
"""gen_demo.py - the demo master data, written once, and the generator of
sql/<dialect>/cp_demo.sql for sqlite, postgresql and mssql (the same rows in
all three, only the syntax differs).

Usage (run with Debian's interpreter, from anywhere):
    /usr/bin/python3 sql/gen_demo.py           write the three cp_demo.sql
    /usr/bin/python3 sql/gen_demo.py --check   exit 1 if a cp_demo.sql is out
                                               of date, or if the dialects of
                                               a schema file (migrations,
                                               cp_subset.sql) drift apart:
                                               a file missing, or tables,
                                               columns, NOT NULL, defaults,
                                               constraints, CHECK expressions,
                                               indexes, view columns differ

cp_demo.sql is applied by `cpbridge db init --demo` after the migrations and
cp_subset.sql, on a database without Counterpoint tables. The engine splits
files at a semicolon that ends a line, so no value may contain a semicolon
(checked below, with lengths and ASCII).
"""

import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DIALECTS = ("sqlite", "postgresql", "mssql")

# ---------------------------------------------------------------------------
# The data.

STORE = {"STR_ID": "WEB", "DESCR": "Web Store"}
STORE_CFG = {
    "STR_ID": "WEB",
    "STK_LOC_ID": "MAIN",
    "PRC_LOC_ID": "MAIN",
    "WALK_IN_CUST_NO": "WEBCASH",
    "NXT_TKT_NO": "500001",
    "NXT_ORD_NO": "100001",
    "USE_ORD_NO_AS_TKT_NO": "Y",
    "USE_MISC_1": "Y",
}
STATIONS = [{"STR_ID": "WEB", "STA_ID": "WEB-01", "DESCR": "Web Order Station"}]
LOCATIONS = [("MAIN", "Main Warehouse"), ("OUTLET", "Outlet Store")]
PAY_CODES = [{"PAY_COD": "EC_WOOCOMM", "DESCR": "WooCommerce Web Payment", "PAY_TYP": "O"}]
WORKGROUPS = [{"WRKGRP_ID": "1", "NXT_CUST_NO": "C1008", "TMPLT_CUST_NO": "WEBCASH"}]

# CUST_NO | NAM | FST_NAM | LST_NAM | CUST_TYP | EMAIL_ADRS_1 | PHONE_1 |
# ADRS_1 | CITY | STATE | ZIP_COD | CNTRY | IS_ECOMM_CUST
# - WEBCASH is the walk-in customer of the web store (PS_STR_CFG_PS).
# - C1001 and C1002 share one e-mail: the match rule takes the lowest CUST_NO
#   with IS_ECOMM_CUST = 'Y' (C1002), not simply the lowest (C1001).
# - C1003 has a mixed-case e-mail (Counterpoint compares case-insensitively).
# - C1007 is reached through USER_CUSTOMER_MAP (source samples, customer 7).
CUSTOMERS = """
WEBCASH|Web Cash Sales|||C|||||||US|N
C1001|Jane Doe|Jane|Doe|C|jane.doe@example.com|555-201-4410|14 Elm Street|Springfield|IL|62701|US|N
C1002|Jane Doe|Jane|Doe|C|jane.doe@example.com|555-201-4410|14 Elm Street|Springfield|IL|62701|US|Y
C1003|Zoe Martin|Zoe|Martin|C|Zoe@Example.ORG|555-310-7788|220 Harbor Road|Portland|ME|04101|US|Y
C1004|Joao Silva|Joao|Silva|C|joao.silva@example.com|351-21-555-0199|Rua das Flores 12|Lisboa||1200-195|PT|Y
C1005|Riverbend Yoga Studio|||A|orders@riverbend-yoga.example|555-480-1200|88 River Road|Madison|WI|53703|US|N
C1006|Marcus Lee|Marcus|Lee|C||555-622-9014|5 Pine Court|Boulder|CO|80302|US|N
C1007|Priya Nair|Priya|Nair|C|priya.nair@example.net|555-734-2251|410 Lake Avenue|Austin|TX|78701|US|Y
"""

# ITEM_NO | DESCR | CATEG_COD | SUBCAT_COD | PRC_1 | REG_PRC | STAT | FLAGS |
# QTY_ON_HND at MAIN | QTY_ON_HND at OUTLET | IM_PRC at MAIN
# FLAGS: T taxable, E sold on the web (IS_ECOMM_ITEM).
# QTY at MAIN: empty = no IM_INV row. QTY at OUTLET: empty = no row.
# IM_PRC: '=' a row with the item prices, '-' no row (the create-order stage
# falls back to IM_ITEM.PRC_1), a number = a row whose PRC_1 differs.
ITEMS = """
TSHIRT-BLU-S|Crew Neck T-Shirt, Blue, Small|APPAREL|TSHIRT|19.99|19.99|A|TE|40||=
TSHIRT-BLU-M|Crew Neck T-Shirt, Blue, Medium|APPAREL|TSHIRT|19.99|19.99|A|TE|65|12|=
TSHIRT-BLU-L|Crew Neck T-Shirt, Blue, Large|APPAREL|TSHIRT|19.99|19.99|A|TE|50||=
TSHIRT-BLK-S|Crew Neck T-Shirt, Black, Small|APPAREL|TSHIRT|19.99|19.99|A|TE|35||=
TSHIRT-BLK-M|Crew Neck T-Shirt, Black, Medium|APPAREL|TSHIRT|19.99|19.99|A|TE|80||=
TSHIRT-BLK-L|Crew Neck T-Shirt, Black, Large|APPAREL|TSHIRT|19.99|19.99|A|TE|55||=
TSHIRT-WHT-M|Crew Neck T-Shirt, White, Medium|APPAREL|TSHIRT|17.99|19.99|A|TE|90||=
TSHIRT-WHT-L|Crew Neck T-Shirt, White, Large|APPAREL|TSHIRT|17.99|19.99|A|TE|70||=
TSHIRT-ORG-M|Organic Cotton T-Shirt, Natural, Medium|APPAREL|TSHIRT|19.99|19.99|A|TE|120||=
TSHIRT-ORG-L|Organic Cotton T-Shirt, Natural, Large|APPAREL|TSHIRT|19.99|19.99|A|TE|5||=
HOODIE-M-BLK|Pullover Hoodie, Black, Medium|APPAREL|HOODIE|49.00|49.00|A|TE|30|8|=
HOODIE-L-BLK|Pullover Hoodie, Black, Large|APPAREL|HOODIE|49.00|49.00|A|TE|25||=
HOODIE-M-GRY|Pullover Hoodie, Heather Grey, Medium|APPAREL|HOODIE|49.00|49.00|A|TE|20||=
HOODIE-L-GRY|Pullover Hoodie, Heather Grey, Large|APPAREL|HOODIE|49.00|49.00|A|TE|15||=
SWEAT-CREW-GRN-M|Crewneck Sweatshirt, Forest Green, Medium|APPAREL|SWEAT|44.00|44.00|A|TE|18||=
JEANS-SLIM-3032|Slim Fit Jeans, Indigo, 30x32|APPAREL|JEANS|59.50|59.50|A|TE|22||=
JEANS-SLIM-3232|Slim Fit Jeans, Indigo, 32x32|APPAREL|JEANS|59.50|59.50|A|TE|28||=
JEANS-SLIM-3432|Slim Fit Jeans, Indigo, 34x32|APPAREL|JEANS|59.50|59.50|A|TE|24||=
JEANS-REL-3432|Relaxed Fit Jeans, Stone Wash, 34x32|APPAREL|JEANS|54.00|54.00|A|TE|16||=
LEGGING-BLK-M|Performance Leggings, Black, Medium|APPAREL|ACTIVE|58.00|58.00|A|TE|34||=
SOCK-CREW-3PK|Cotton Crew Socks, 3-Pack, Assorted|APPAREL|SOCKS|12.00|12.00|A|TE|200|40|=
SOCK-WOOL-HIKE|Merino Wool Hiking Socks, Charcoal|APPAREL|SOCKS|18.50|18.50|A|TE|75||=
CAP-BASE-NVY|Six-Panel Baseball Cap, Navy|APPAREL|HATS|22.00|22.00|A|TE|45||=
BEANIE-KNIT-RED|Ribbed Knit Beanie, Red|APPAREL|HATS|16.00|16.00|A|TE|60||=
JACKET-RAIN-M|Packable Rain Jacket, Slate, Medium|APPAREL|OUTERWEAR|89.00|89.00|A|TE|12||79.00
JACKET-RAIN-L|Packable Rain Jacket, Slate, Large|APPAREL|OUTERWEAR|89.00|89.00|A|TE|10||=
FLANNEL-RED-M|Flannel Shirt, Red Plaid, Medium|APPAREL|SHIRTS|29.95|39.95|A|TE|26||=
POLO-NVY-L|Pique Polo Shirt, Navy, Large|APPAREL|SHIRTS|29.99|29.99|D|TE|12||=
SNEAK-WHT-09|Canvas Low-Top Sneaker, White, Size 9|SHOES|SNEAKER|54.99|54.99|A|TE|14||=
SNEAK-WHT-10|Canvas Low-Top Sneaker, White, Size 10|SHOES|SNEAKER|54.99|54.99|A|TE|18|4|=
SNEAK-WHT-11|Canvas Low-Top Sneaker, White, Size 11|SHOES|SNEAKER|54.99|54.99|A|TE|9||=
RUNR-BLK-10|Lightweight Running Shoe, Black, Size 10|SHOES|RUNNING|109.00|109.00|A|TE|11||=
BOOT-CHL-BRN-10|Chelsea Boot, Brown Leather, Size 10|SHOES|BOOTS|149.00|149.00|A|TE|7||=
BOOT-RAIN-KID-12|Kids' Rain Boot, Yellow, Size 12|SHOES|BOOTS|34.00|34.00|A|TE|20||=
SANDAL-SLD-09|Slide Sandal, Black, Size 9|SHOES|SANDALS|24.00|24.00|D|TE|||-
SLIPPER-MOC-M|Shearling Moccasin Slipper, Medium|SHOES|SLIPPERS|45.00|45.00|A|TE|19||=
BELT-LTH-BRN-34|Leather Belt, Brown, 34|ACCESS|BELTS|35.00|35.00|A|TE|30||=
WALLET-BIFOLD|Leather Bifold Wallet, Black|ACCESS|SMALL-LTH|39.00|39.00|A|TE|42||=
TOTE-CANVAS|Heavy Canvas Tote Bag, Natural|ACCESS|BAGS|24.00|24.00|A|TE|85||=
BKPK-DAY-GRY|Daypack Backpack, 20 L, Grey|ACCESS|BAGS|64.00|64.00|A|TE|21||=
SUNGL-POL-TORT|Polarized Sunglasses, Tortoise|ACCESS|EYEWEAR|79.00|79.00|A|TE|13||=
SCARF-WOOL-GRY|Lambswool Scarf, Charcoal|ACCESS|SCARVES|34.00|34.00|A|TE|27||=
UMBRELLA-CMPT|Compact Travel Umbrella, Black|ACCESS|UMBRELLA|21.00|21.00|A|TE|38||=
WATCH-FIELD-OLV|Field Watch, Olive Canvas Strap|ACCESS|WATCHES|129.00|129.00|A|TE|6||-
MUG-CER-350|Ceramic Coffee Mug, 350 ml|HOME|KITCHEN|9.90|9.90|A|TE|150|30|=
MUG-ENAMEL-WHT|Enamel Camp Mug, White|HOME|KITCHEN|14.00|14.00|A|TE|64||=
TEAPOT-CAST-IRN|Cast Iron Teapot, 0.8 L|HOME|KITCHEN|48.00|48.00|A|TE|9||=
BOTTLE-INS-750|Insulated Water Bottle, 750 ml, Sage|HOME|KITCHEN|27.00|27.00|A|TE|110||=
COASTER-CORK-4|Cork Coaster Set of 4|HOME|KITCHEN|12.50|12.50|A|TE|95||-
CANDLE-SOY-CED|Soy Candle, Cedar and Sage, 8 oz|HOME|CANDLES|18.00|18.00|A|TE|48||=
CANDLE-SOY-LAV|Soy Candle, Lavender, 8 oz|HOME|CANDLES|18.00|18.00|A|TE|52||16.00
THROW-KNIT-OAT|Cable Knit Throw Blanket, Oatmeal|HOME|TEXTILES|79.00|79.00|A|TE|17||=
PILLOW-LIN-BLU|Linen Pillow Cover, 18 x 18 in, Blue|HOME|TEXTILES|29.00|29.00|A|TE|33||=
TOWEL-BATH-WHT|Turkish Cotton Bath Towel, White|HOME|TEXTILES|32.00|32.00|A|TE|58||=
PLANTER-TERR-6|Terracotta Planter, 6 in|HOME|DECOR|15.00|15.00|A|TE|44||=
FRAME-OAK-5X7|Oak Picture Frame, 5 x 7 in|HOME|DECOR|22.00|22.00|A|TE|36||=
EBOOK-BREW|Brewing Guide E-Book, Download Card|GIFTS|BOOKS|4.50|4.50|A|TE|200||=
BOOK-COFFEE|Coffee Origins, Hardcover Book|GIFTS|BOOKS|35.00|35.00|A|TE|15||-
GIFTBOX-SM|Gift Box with Tissue, Small|GIFTS|WRAP|3.00|3.00|A|E|120||-
CARD-GREET-BDAY|Greeting Card, Birthday|GIFTS|CARDS|4.95|4.95|A|T|140||-
"""

# Legacy web SKUs (stored normalized: trimmed, upper-case) -> item numbers.
# Both appear in the WooCommerce sample orders.
ITEM_MAP = [("TSHIRT-ORG-01", "TSHIRT-ORG-M"), ("MUG-350", "MUG-CER-350")]

# (SOURCE, WOO_CUSTOMER_ID, CUST_NO, IS_ACTIVE)
CUSTOMER_MAP = [("samples", 7, "C1007", 1)]

# ---------------------------------------------------------------------------
# Checks on the data: every byte ends up in SQL text.


def fail(msg):
    sys.stderr.write("gen_demo.py: %s\n" % msg)
    sys.exit(1)


def check_text(where, value, maxlen):
    if len(value) > maxlen:
        fail("%s: %r is longer than %d" % (where, value, maxlen))
    if ";" in value:
        fail("%s: %r contains a semicolon (the engine splits on it)" % (where, value))
    if any(ord(c) < 32 or ord(c) > 126 for c in value):
        fail("%s: %r is not printable ASCII" % (where, value))


def parse_table(text, ncols, name):
    rows = []
    for n, line in enumerate(text.strip().split("\n"), 1):
        cols = line.split("|")
        if len(cols) != ncols:
            fail("%s row %d: %d columns, expected %d" % (name, n, len(cols), ncols))
        rows.append(cols)
    return rows


def money(where, text):
    if not re.fullmatch(r"\d{1,9}\.\d{2}", text):
        fail("%s: %r is not a money amount like 12.34" % (where, text))
    return text


def qty(where, text):
    if text == "":
        return None
    if not re.fullmatch(r"\d{1,3}", text) or not 1 <= int(text) <= 200:
        fail("%s: quantity %r not in 1..200" % (where, text))
    return int(text)


def cost_of(price):
    """45 % of the price, rounded half up to cents, as text."""
    cents = int(price.replace(".", ""))
    return "%d.%02d" % divmod((cents * 45 + 50) // 100, 100)


def load():
    customers = []
    for c in parse_table(CUSTOMERS, 13, "CUSTOMERS"):
        (cust_no, nam, fst, lst, typ, email, phone, adrs, city, state, zip_cod, cntry,
         ecomm) = c
        lengths = (15, 40, 15, 25, 1, 50, 25, 40, 20, 10, 15, 20, 1)
        for value, maxlen in zip(c, lengths):
            check_text("customer " + cust_no, value, maxlen)
        if typ not in ("C", "A") or ecomm not in ("Y", "N") or nam == "":
            fail("customer %s: bad CUST_TYP, IS_ECOMM_CUST or empty NAM" % cust_no)
        customers.append({
            "CUST_NO": cust_no, "NAM": nam, "NAM_UPR": nam.upper(),
            "FST_NAM": fst or None, "FST_NAM_UPR": fst.upper() or None,
            "LST_NAM": lst or None, "LST_NAM_UPR": lst.upper() or None,
            "CUST_TYP": typ, "EMAIL_ADRS_1": email or None, "PHONE_1": phone or None,
            "ADRS_1": adrs or None, "CITY": city or None, "STATE": state or None,
            "ZIP_COD": zip_cod or None, "CNTRY": cntry or None, "IS_ECOMM_CUST": ecomm,
        })

    items, inv, prices = [], [], []
    for r in parse_table(ITEMS, 11, "ITEMS"):
        item_no, descr, categ, subcat, prc_1, reg_prc, stat, flags, q_main, q_outlet, imprc = r
        where = "item " + item_no
        check_text(where, item_no, 20)
        check_text(where, descr, 60)
        check_text(where, categ, 10)
        check_text(where, subcat, 10)
        if item_no != item_no.strip().upper() or stat not in ("A", "D"):
            fail("%s: item number not normalized, or STAT not A/D" % where)
        if set(flags) - set("TE"):
            fail("%s: unknown flags %r" % (where, flags))
        money(where, prc_1)
        money(where, reg_prc)
        q_main, q_outlet = qty(where, q_main), qty(where, q_outlet)
        if stat == "A" and (q_main is None or q_main < 5):
            fail("%s: an active item needs QTY_ON_HND 5..200 at MAIN" % where)
        items.append({
            "ITEM_NO": item_no, "DESCR": descr, "DESCR_UPR": descr.upper(),
            "ITEM_TYP": "I", "STAT": stat, "CATEG_COD": categ, "SUBCAT_COD": subcat,
            "STK_UNIT": "EACH", "IS_TXBL": "Y" if "T" in flags else "N",
            "PRC_1": prc_1, "REG_PRC": reg_prc, "LST_COST": cost_of(reg_prc),
            "IS_ECOMM_ITEM": "Y" if "E" in flags else "N",
        })
        for loc, q in (("MAIN", q_main), ("OUTLET", q_outlet)):
            if q is not None:
                inv.append({"ITEM_NO": item_no, "LOC_ID": loc, "QTY_ON_HND": q,
                            "LST_COST": cost_of(reg_prc)})
        if imprc != "-":
            prc = prc_1 if imprc == "=" else money(where, imprc)
            prices.append({"ITEM_NO": item_no, "LOC_ID": "MAIN", "REG_PRC": reg_prc,
                           "PRC_1": prc})

    numbers = [i["ITEM_NO"] for i in items]
    if len(set(numbers)) != len(numbers):
        fail("duplicate item numbers")
    if len(items) < 55:
        fail("only %d items, the demo promises 55 or more" % len(items))
    active = {i["ITEM_NO"] for i in items if i["STAT"] == "A"}
    for sku, item_no in ITEM_MAP:
        check_text("item map", sku, 100)
        if sku != sku.strip().upper() or item_no not in active or sku in numbers:
            fail("item map %s -> %s: not normalized, target not active, or SKU is an item"
                 % (sku, item_no))
    for _, _, cust_no, _ in CUSTOMER_MAP:
        if cust_no not in {c["CUST_NO"] for c in customers}:
            fail("customer map -> %s: no such customer" % cust_no)
    return customers, items, inv, prices


# ---------------------------------------------------------------------------
# SQL text.


def lit(value):
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


# Columns written as numbers (validated as such by load()), not as strings.
NUMERIC = {"PRC_1", "REG_PRC", "LST_COST", "QTY_ON_HND"}


def insert(dialect, table, rows, columns=None):
    columns = columns or list(rows[0].keys())
    name = ("dbo." + table) if dialect == "mssql" else table
    out = ["INSERT INTO %s (%s) VALUES" % (name, ", ".join(columns))]
    for n, row in enumerate(rows):
        vals = []
        for col in columns:
            v = row[col]
            vals.append(str(v) if col in NUMERIC and v is not None else lit(v))
        out.append("    (%s)%s" % (", ".join(vals), ";" if n == len(rows) - 1 else ","))
    return "\n".join(out)


HEADER = """\
-- cp_demo.sql (%(label)s) - demo master data for `cpbridge db init --demo`:
-- store WEB, station WEB-01, locations MAIN and OUTLET, pay code EC_WOOCOMM,
-- %(ncust)d customers, %(nitem)d items with inventory and prices, and the
-- USER_ITEM_MAP and USER_CUSTOMER_MAP rows the sample orders need.
-- GENERATED by sql/gen_demo.py from the data in that script: do not edit.
-- Regenerate with /usr/bin/python3 sql/gen_demo.py (the same rows go to all
-- three dialects). Applied after 001_engine.sql and cp_subset.sql.
"""

LABELS = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mssql": "SQL Server"}


def render(dialect, data):
    customers, items, inv, prices = data
    parts = [HEADER % {"label": LABELS[dialect], "ncust": len(customers), "nitem": len(items)}]

    def add(comment, table, rows, columns=None):
        parts.append("-- %s\n%s\n" % (comment, insert(dialect, table, rows, columns)))

    add("The web store and its POS configuration.", "PS_STR", [STORE])
    add("Locations.", "IM_LOC",
        [{"LOC_ID": l, "DESCR": d, "DESCR_UPR": d.upper()} for l, d in LOCATIONS])
    add("Orders are numbered from NXT_ORD_NO, shipping uses misc charge 1.",
        "PS_STR_CFG_PS", [STORE_CFG])
    add("The station web orders are entered on.", "PS_STA", STATIONS)
    add("The generic pay code for WooCommerce payments.", "SY_PAY_COD", PAY_CODES)
    add("Workgroup: next customer number and template customer.", "SY_WRKGRP", WORKGROUPS)
    add("Customers.", "AR_CUST", customers)
    add("Items. STAT D = discontinued.", "IM_ITEM", items)
    add("Inventory: every active item at MAIN, a few at OUTLET. QTY_AVAIL is computed.",
        "IM_INV", inv)
    add("Prices at MAIN (DIM_*_UPR take their default). Items without a row fall "
        "back to IM_ITEM.PRC_1.", "IM_PRC", prices)
    add("Legacy web SKUs that are not item numbers.", "USER_ITEM_MAP",
        [{"SKU": s, "ITEM_NO": i} for s, i in ITEM_MAP])
    add("A WooCommerce customer id mapped to a Counterpoint customer.", "USER_CUSTOMER_MAP",
        [{"SOURCE": s, "WOO_CUSTOMER_ID": w, "CUST_NO": c, "IS_ACTIVE": a}
         for s, w, c, a in CUSTOMER_MAP])
    return "\n".join(parts)


# ---------------------------------------------------------------------------
# Lockstep check of the hand-written schema files.


def shape(path):
    """Tables with their columns (name, NOT NULL, default) and constraint
    names, indexes and views. Types differ by dialect and are not compared.
    Named defaults (DF_, SQL Server only) are compared by value only."""
    text = open(path, encoding="utf-8").read()
    text = re.sub(r"--[^\n]*", "", text)
    result = {}
    for m in re.finditer(r"CREATE TABLE (?:dbo\.)?(\w+) \((.*?)\n\);", text, re.S):
        cols, cons = [], []
        body = re.sub(r"\n {8,}", " ", m.group(2))  # join continuation lines
        for line in body.split("\n"):
            c = re.match(r"\s{4}(\w+)\s", line)
            if c and c.group(1) != "CONSTRAINT":
                default = re.search(r"DEFAULT ('[^']*'|-?\d+)", line)
                cols.append((c.group(1),
                             "NOT NULL" in line or "PRIMARY KEY" in line,
                             default.group(1) if default else None))
            # constraint names, with the expression of a CHECK
            cons += [n + e for n, e in re.findall(r"CONSTRAINT (\w+)(?: DEFAULT \S+)?"
                                                  r"(?: CHECK (\(.*\)))?", line)
                     if not n.startswith("DF_")]
        result["table " + m.group(1)] = (cols, sorted(cons))
    for m in re.finditer(r"CREATE (?:UNIQUE )?INDEX (\w+) ON (?:dbo\.)?(\w+) \(([^)]*)\)", text):
        result["index " + m.group(1)] = (m.group(2), m.group(3))
    for m in re.finditer(r"CREATE VIEW (?:dbo\.)?(\w+) AS(.*?);", text, re.S):
        result["view " + m.group(1)] = re.findall(r"\bAS (\w+)", m.group(2))
    return result


def check_lockstep(filename):
    shapes = {d: shape(os.path.join(HERE, d, filename)) for d in DIALECTS}
    ok = True
    base = shapes["sqlite"]
    for d in DIALECTS[1:]:
        if shapes[d] != base:
            ok = False
            for key in sorted(set(base) | set(shapes[d])):
                if base.get(key) != shapes[d].get(key):
                    sys.stderr.write("%s: %s differs between sqlite and %s:\n  %r\n  %r\n"
                                     % (filename, key, d, base.get(key), shapes[d].get(key)))
    return ok


def main(argv):
    check = argv[1:] == ["--check"]
    if argv[1:] and not check:
        sys.stderr.write("usage: gen_demo.py [--check]\n")
        return 64
    data = load()
    ok = True
    for dialect in DIALECTS:
        path = os.path.join(HERE, dialect, "cp_demo.sql")
        text = render(dialect, data)
        if check:
            try:
                with open(path, encoding="utf-8") as f:
                    current = f.read()
            except OSError:
                current = None
            if current != text:
                sys.stderr.write("%s is out of date: run gen_demo.py\n" % path)
                ok = False
        else:
            tmp = path + ".tmp"
            with open(tmp, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
            os.replace(tmp, path)
    if check:
        names = {d: {n for n in os.listdir(os.path.join(HERE, d)) if n.endswith(".sql")}
                 for d in DIALECTS}
        for filename in sorted(set.union(*names.values()) - {"cp_demo.sql"}):
            missing = [d for d in DIALECTS if filename not in names[d]]
            if missing:
                sys.stderr.write("%s is missing in %s\n" % (filename, ", ".join(missing)))
                ok = False
            else:
                ok = check_lockstep(filename) and ok
        print("gen_demo.py --check: %s" % ("ok" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
