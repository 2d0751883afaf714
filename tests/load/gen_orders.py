#!/usr/bin/python3
"""gen_orders.py - load generator: writes N realistic WooCommerce REST v3
orders for cpbridge's load tests and benchmarks (standard library only; run
it with /usr/bin/python3).

    gen_orders.py --count N --lines L [--lines-max M] --seed S
                  [--invalid-share 0.05] --out DIR [--format files|array]
                  [--start-id 100000] [--manifest FILE] [--floor FILE]

What it writes:
  - DIR/<id, 12 digits>.json, one order per file (--format files, the
    default), or DIR/orders.json, one array of all orders (--format array).
    Either is read by the source-file stage (path = DIR) and served by the
    WooCommerce stand-in (tests/servers/woo_standin.py --orders DIR).
  - --manifest FILE: what each order should become, for the correctness
    checks of tests/load (JSON: per order its id, kind, expected customer,
    item numbers and quantities).
  - --floor FILE: the rows a minimal writer needs for the same orders (one
    TAB-separated record per line, described in tests/load/floor.c), for
    the floor program the benchmark compares cpbridge with.

The orders use the demo catalogue of sql/gen_demo.py (imported, so its
checks run too): only active web items (IS_ECOMM_ITEM) with stock at MAIN,
at the catalogue price (IM_PRC at MAIN, else IM_ITEM.PRC_1), sometimes by
their legacy web SKU from USER_ITEM_MAP. Customers mix guests, registered
customers nobody knows (both end on the walk-in customer), web customer 7
(mapped to C1007 for source "samples") and the catalogue's e-mails (matched
case-insensitively). Shipping, fees, percent coupons and a customer note
appear sometimes. Money adds up to the cent the way WooCommerce adds it
(woo_standin.py --check-fixtures accepts every valid order).

--invalid-share of the orders (rounded) are wrong on purpose, in turn:
  unknown_sku  one line's SKU is in no catalogue      (validate: item.unknown)
  bad_total    the total is 5.00 off its parts         (validate: totals.mismatch)
  zero_qty     one line has quantity 0 and no money    (staging: payload.malformed)

The same arguments give byte-identical output: everything comes from one
random.Random(seed), dates from a fixed base in the past, and files are
written in a fixed order with fixed formatting.
"""

import argparse
import decimal
import importlib.util
import json
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
GEN_DEMO = os.path.join(HERE, "..", "..", "sql", "gen_demo.py")

D = decimal.Decimal
CENT = D("0.01")
# The customer map of the demo data is keyed by this source name.
SOURCE = "samples"
# 2024-03-04T08:00:00Z: far enough in the past for validate's future check on
# any plausible clock, and after its default date floor (2015-01-01).
BASE_EPOCH = 1709539200
# (state, city, postcode, tax rate %, tax on shipping)
PLACES = [
    ("WA", "Seattle", "98136", D("10.35"), True),
    ("TX", "Austin", "78701", D("6.25"), True),
    ("IL", "Springfield", "62701", D("6.25"), False),
    ("ME", "Portland", "04101", D("5.5"), False),
    ("NY", "Brooklyn", "11201", D("8.875"), True),
    ("OR", "Portland", "97214", D("0"), False),
    ("CA", "Oakland", "94612", D("7.25"), False),
]
FIRST = ["Harlan", "Mia", "Noah", "Aisha", "Lucas", "Emma", "Kenji", "Sofia", "Omar", "Lena",
         "Diego", "Grace", "Ivan", "Chloe", "Mateo", "Hana"]
LAST = ["Pierce", "Okafor", "Lindqvist", "Nguyen", "Garcia", "Schmidt", "Tanaka", "Rossi",
        "Haddad", "Kowalski", "Moreau", "Brennan", "Silva", "Park", "Novak", "Ahmed"]
STREETS = ["Elm Street", "Harbor Road", "Pine Court", "Lake Avenue", "Hawthorne Blvd",
           "California Ave SW", "Maple Drive", "River Road"]
NOTES = ["Please leave the parcel at the back door.", "Gift - no prices on the slip, please.",
         "Call before delivery.", "Birthday present - please include a gift receipt."]
PAYMENTS = [("stripe", "Credit Card (Stripe)"), ("paypal", "PayPal"),
            ("bacs", "Direct bank transfer")]
AGENTS = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
          " Chrome/121.0.0.0 Safari/537.36",
          "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) AppleWebKit/605.1.15"
          " (KHTML, like Gecko) Version/17.3 Mobile/15E148 Safari/604.1"]
# The catalogue's e-mails as a store would send them (case varies).
EMAIL_SPELLINGS = {"Zoe@Example.ORG": ["zoe@EXAMPLE.org", "Zoe@Example.ORG", "zoe@example.org"]}
INVALID_KINDS = ("unknown_sku", "bad_total", "zero_qty")


def fail(msg):
    sys.stderr.write("gen_orders.py: %s\n" % msg)
    sys.exit(2)


def load_demo():
    """The demo master data, from sql/gen_demo.py (which checks it)."""
    spec = importlib.util.spec_from_file_location("gen_demo", GEN_DEMO)
    if spec is None or spec.loader is None:
        fail("cannot load %s" % GEN_DEMO)
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
        customers, items, inv, prices = mod.load()
    except (OSError, SyntaxError) as err:
        fail("cannot load %s: %s" % (GEN_DEMO, err))
    return mod, customers, items, inv, prices


class Catalogue:
    """What the generator needs from the demo data."""

    def __init__(self):
        mod, customers, items, inv, prices = load_demo()
        at_main = {r["ITEM_NO"] for r in inv if r["LOC_ID"] == "MAIN"}
        price_at_main = {p["ITEM_NO"]: p["PRC_1"] for p in prices if p["LOC_ID"] == "MAIN"}
        legacy = {}
        for sku, item_no in mod.ITEM_MAP:
            legacy.setdefault(item_no, sku)
        self.items = []
        for i in items:
            if i["STAT"] != "A" or i["IS_ECOMM_ITEM"] != "Y" or i["ITEM_NO"] not in at_main:
                continue
            self.items.append({
                "item_no": i["ITEM_NO"],
                "name": i["DESCR"],
                "price": D(price_at_main.get(i["ITEM_NO"], i["PRC_1"])),
                "taxable": i["IS_TXBL"] == "Y",
                "legacy_sku": legacy.get(i["ITEM_NO"]),
            })
        if len(self.items) < 20:
            fail("the demo catalogue has only %d usable items" % len(self.items))
        self.walk_in = mod.STORE_CFG["WALK_IN_CUST_NO"]
        self.customer_map = {(s, w): c for s, w, c, active in mod.CUSTOMER_MAP if active}
        self.customers = customers
        self.emails = sorted({c["EMAIL_ADRS_1"] for c in customers if c["EMAIL_ADRS_1"]})

    def customer_for(self, source, customer_id, email):
        """The customer validate should pick: the map, then the e-mail
        (case-insensitive, trimmed; IS_ECOMM_CUST 'Y' first, then the lowest
        CUST_NO), else the walk-in customer."""
        if customer_id > 0 and (source, customer_id) in self.customer_map:
            return self.customer_map[(source, customer_id)]
        folded = email.strip().upper()
        if folded:
            hits = [c for c in self.customers
                    if (c["EMAIL_ADRS_1"] or "").strip().upper() == folded]
            if hits:
                hits.sort(key=lambda c: (0 if c["IS_ECOMM_CUST"] == "Y" else 1, c["CUST_NO"]))
                return hits[0]["CUST_NO"]
        return self.walk_in


def money(value):
    return str(value.quantize(CENT, rounding=decimal.ROUND_HALF_UP))


def cents(value):
    return value.quantize(CENT, rounding=decimal.ROUND_HALF_UP)


def exact(value):
    """A decimal as plain text without trailing zeros (never "1E+1")."""
    return format(value.normalize(), "f")


def stamp(epoch):
    """UTC time as WooCommerce writes it, without a zone."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))


def local_stamp(epoch):
    """The store's local time (UTC-8), as in the sample orders."""
    return stamp(epoch - 8 * 3600)


class Generator:
    def __init__(self, args, cat):
        self.args = args
        self.cat = cat
        self.rng = random.Random(args.seed)
        self.next_sub_id = 1  # line, meta, shipping ... ids, unique in the set

    def sub_id(self):
        value = self.next_sub_id
        self.next_sub_id += 1
        return value

    def address(self, first, last, place):
        rng = self.rng
        state, city, postcode, _, _ = place
        return {
            "first_name": first,
            "last_name": last,
            "company": "",
            "address_1": "%d %s" % (rng.randint(1, 9999), rng.choice(STREETS)),
            "address_2": "",
            "city": city,
            "state": state,
            "postcode": postcode,
            "country": "US",
        }

    def customer(self, order_id):
        """(customer_id, email, first, last) for one order."""
        rng = self.rng
        first, last = rng.choice(FIRST), rng.choice(LAST)
        roll = rng.random()
        if roll < 0.40:  # guest, unknown e-mail
            return 0, "%s.%s.%d@example.test" % (first.lower(), last.lower(), order_id), first, last
        if roll < 0.50:  # web customer 7, mapped to C1007 (its own e-mail differs)
            return 7, "priya.n@example.org", "Priya", "Nair"
        if roll < 0.75:  # a catalogue e-mail, as a guest or an unmapped account
            email = rng.choice(self.cat.emails)
            email = rng.choice(EMAIL_SPELLINGS.get(email, [email]))
            cid = 0 if rng.random() < 0.5 else rng.randint(100, 99999)
            return cid, email, first, last
        # a registered customer Counterpoint does not know
        cid = rng.randint(100, 99999)
        return cid, "%s.%s@example.net" % (first.lower(), cid), first, last

    def lines(self, nlines, rate, coupon_pct):
        """The line items, with their money; (lines, sums)."""
        rng = self.rng
        chosen = rng.sample(self.cat.items, nlines) if nlines <= len(self.cat.items) else \
            [rng.choice(self.cat.items) for _ in range(nlines)]
        out = []
        for item in chosen:
            qty = rng.choice((1, 1, 1, 1, 2, 2, 3)) if rng.random() < 0.9 else rng.randint(4, 6)
            subtotal = item["price"] * qty
            total = subtotal if coupon_pct == 0 else cents(subtotal * (100 - coupon_pct) / 100)
            r = rate if item["taxable"] else D(0)
            sub_tax_exact = subtotal * r / 100
            tax_exact = total * r / 100
            sku = item["item_no"]
            if item["legacy_sku"] is not None and rng.random() < 0.5:
                sku = item["legacy_sku"].lower()
            line_id = self.sub_id()
            taxes = []
            if r != 0:
                taxes = [{"id": 1, "total": exact(tax_exact),
                          "subtotal": exact(sub_tax_exact)}]
            out.append({
                "id": line_id,
                "name": item["name"].replace(",", " -", 1),
                "product_id": 400 + self.cat.items.index(item),
                "variation_id": 0,
                "quantity": qty,
                "tax_class": "",
                "subtotal": money(subtotal),
                "subtotal_tax": money(sub_tax_exact),
                "total": money(total),
                "total_tax": money(tax_exact),
                "taxes": taxes,
                "meta_data": [{"id": self.sub_id(), "key": "_reduced_stock", "value": str(qty),
                               "display_key": "_reduced_stock", "display_value": str(qty)}],
                "sku": sku,
                "price": float(total) / qty,
                "image": {"id": 2000 + line_id % 1000,
                          "src": "https://shop.example.test/wp-content/uploads/%s.jpg"
                                 % item["item_no"].lower()},
                "parent_name": None,
                "_item_no": item["item_no"],
            })
        return out

    def order(self, index, order_id, kind):
        rng = self.rng
        args = self.args
        place = rng.choice(PLACES)
        rate, ship_taxed = place[3], place[4]
        nlines = rng.randint(args.lines, args.lines_max)
        coupon_pct = rng.choice((10, 20)) if rng.random() < 0.15 else 0
        customer_id, email, first, last = self.customer(order_id)
        lines = self.lines(nlines, rate, coupon_pct)

        if kind == "unknown_sku":
            bad = rng.randrange(len(lines))
            lines[bad]["sku"] = "NOPE-%05d" % rng.randint(0, 99999)
            lines[bad]["_item_no"] = None
        if kind == "zero_qty":
            bad = rng.randrange(len(lines))
            line = lines[bad]
            line.update({"quantity": 0, "subtotal": "0.00", "subtotal_tax": "0.00",
                         "total": "0.00", "total_tax": "0.00", "taxes": [], "price": 0})

        shipping_lines = []
        roll = rng.random()
        if roll < 0.75:
            ship = D(rng.choice(("6.95", "8.00", "12.00")))
            ship_tax = cents(ship * rate / 100) if ship_taxed else D("0.00")
            shipping_lines.append({
                "id": self.sub_id(), "method_title": "Flat rate", "method_id": "flat_rate",
                "instance_id": "1", "total": money(ship), "total_tax": money(ship_tax),
                "taxes": ([{"id": 1, "total": exact(ship * rate / 100),
                            "subtotal": ""}] if ship_taxed and rate != 0 else []),
                "meta_data": []})
        elif roll < 0.85:
            shipping_lines.append({
                "id": self.sub_id(), "method_title": "Free shipping",
                "method_id": "free_shipping", "instance_id": "2", "total": "0.00",
                "total_tax": "0.00", "taxes": [], "meta_data": []})
        fee_lines = []
        if rng.random() < 0.08:
            fee_lines.append({"id": self.sub_id(), "name": "Gift wrapping", "tax_class": "",
                              "tax_status": "none", "amount": "", "total": "5.00",
                              "total_tax": "0.00", "taxes": [], "meta_data": []})

        lines_total = sum((D(l["total"]) for l in lines), D(0))
        lines_tax = sum((D(l["total_tax"]) for l in lines), D(0))
        discount = sum((D(l["subtotal"]) - D(l["total"]) for l in lines), D(0))
        discount_tax = sum((D(l["subtotal_tax"]) - D(l["total_tax"]) for l in lines), D(0))
        ship_total = sum((D(s["total"]) for s in shipping_lines), D(0))
        ship_tax = sum((D(s["total_tax"]) for s in shipping_lines), D(0))
        fee_total = sum((D(f["total"]) for f in fee_lines), D(0))
        total_tax = lines_tax + ship_tax
        total = lines_total + ship_total + fee_total + total_tax
        if kind == "bad_total":
            total += D("5.00")

        coupon_lines = []
        if coupon_pct:
            coupon_lines.append({"id": self.sub_id(), "code": "save%d" % coupon_pct,
                                 "discount": money(discount), "discount_tax": money(discount_tax),
                                 "meta_data": []})
        tax_lines = []
        if total_tax != 0:
            tax_lines.append({"id": self.sub_id(), "rate_code": "US-%s-TAX-1" % place[0],
                              "rate_id": 1, "label": "%s Sales Tax" % place[0],
                              "compound": False, "tax_total": money(lines_tax),
                              "shipping_tax_total": money(ship_tax),
                              "rate_percent": float(rate), "meta_data": []})

        created = BASE_EPOCH + index * 37 + rng.randint(0, 30)
        method, title = rng.choice(PAYMENTS)
        billing = self.address(first, last, place)
        billing["email"] = email
        billing["phone"] = "555-%03d-%04d" % (rng.randint(100, 999), rng.randint(0, 9999))
        shipping = dict(billing)
        del shipping["email"]
        if rng.random() < 0.2:
            shipping = self.address(rng.choice(FIRST), last, place)
            shipping["phone"] = ""
        note = rng.choice(NOTES) if rng.random() < 0.1 else ""
        order = {
            "id": order_id,
            "parent_id": 0,
            "status": "processing",
            "currency": "USD",
            "version": "8.5.2",
            "prices_include_tax": False,
            "date_created": local_stamp(created),
            "date_modified": local_stamp(created + 5),
            "discount_total": money(discount),
            "discount_tax": money(discount_tax),
            "shipping_total": money(ship_total),
            "shipping_tax": money(ship_tax),
            "cart_tax": money(lines_tax),
            "total": money(total),
            "total_tax": money(total_tax),
            "customer_id": customer_id,
            "order_key": "wc_order_%012x" % rng.getrandbits(48),
            "billing": billing,
            "shipping": shipping,
            "payment_method": method,
            "payment_method_title": title,
            "transaction_id": "pi_%024x" % rng.getrandbits(96) if method == "stripe" else "",
            "customer_ip_address": "198.51.100.%d" % rng.randint(1, 254),
            "customer_user_agent": rng.choice(AGENTS),
            "created_via": "checkout",
            "customer_note": note,
            "date_completed": None,
            "date_paid": local_stamp(created),
            "cart_hash": "%032x" % rng.getrandbits(128),
            "number": str(order_id),
            "meta_data": [{"id": self.sub_id(), "key": "is_vat_exempt", "value": "no"}],
            "line_items": lines,
            "tax_lines": tax_lines,
            "shipping_lines": shipping_lines,
            "fee_lines": fee_lines,
            "coupon_lines": coupon_lines,
            "refunds": [],
            "date_created_gmt": stamp(created),
            "date_modified_gmt": stamp(created + 5),
            "date_completed_gmt": None,
            "date_paid_gmt": stamp(created),
            "currency_symbol": "$",
        }
        expect = {
            "id": order_id,
            "number": str(order_id),
            "kind": kind,
            "cust_no": self.cat.customer_for(SOURCE, customer_id, email),
            "total": money(total),
            "lines": [[l["_item_no"], l["quantity"]] for l in lines],
        }
        floor = {
            "order": order, "kind": kind, "email": email, "customer_id": customer_id,
            "cust_no": expect["cust_no"], "lines_total": lines_total, "ship": ship_total,
            "fees": fee_total, "tax": total_tax, "total": total, "created": created,
            "subtotal": lines_total + discount, "note": note, "title": title,
        }
        for l in lines:
            del l["_item_no"]
        return order, expect, floor

    def run(self):
        args = self.args
        n_invalid = int((D(args.count) * D(str(args.invalid_share))).to_integral_value(
            rounding=decimal.ROUND_HALF_UP))
        bad = sorted(self.rng.sample(range(args.count), n_invalid))
        kinds = {index: INVALID_KINDS[k % len(INVALID_KINDS)] for k, index in enumerate(bad)}
        for index in range(args.count):
            yield self.order(index, args.start_id + index, kinds.get(index, "valid"))


def dump(value):
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def floor_field(text):
    """A text field of the floor file: no TAB, CR or LF (never produced)."""
    text = str(text)
    if any(c in text for c in "\t\r\n"):
        fail("a floor field contains a TAB or a line break: %r" % text[:40])
    return text


def floor_records(f):
    """The floor file's records for one order (see tests/load/floor.c)."""
    order = f["order"]
    valid = f["kind"] == "valid"
    created = stamp(f["created"]).replace("T", " ")
    head = ["O", order["id"], "APPLIED" if valid else "INVALID", f["email"], f["customer_id"],
            "%s %s" % (order["billing"]["first_name"], order["billing"]["last_name"]),
            money(f["total"]), created, f["cust_no"] if valid else "",
            len(order["line_items"]), money(f["ship"]), money(f["fees"]), money(f["tax"]),
            money(f["subtotal"]), money(f["lines_total"]), f["note"], f["title"],
            dump(order)]
    out = ["\t".join(floor_field(v) for v in head)]
    for seq, line in enumerate(order["line_items"], 1):
        qty = line["quantity"]
        price = (D(line["total"]) / qty).quantize(D("0.0001")) if qty else D(0)
        item_no = f["item_nos"][seq - 1] or line["sku"].strip().upper()[:20]
        out.append("\t".join(floor_field(v) for v in [
            "L", seq, line["id"], line["sku"], item_no,
            line["name"], qty, price, line["subtotal"], line["total"], line["total_tax"]]))
    for cid, addr in ((1, order["billing"]), (2, order["shipping"])):
        out.append("\t".join(floor_field(v) for v in [
            "C", cid, "%s %s" % (addr["first_name"], addr["last_name"]), addr["first_name"],
            addr["last_name"], addr["address_1"], addr["city"], addr["state"], addr["postcode"],
            addr["country"], addr.get("phone", ""), addr.get("email", "")]))
    return out


def main(argv):
    p = argparse.ArgumentParser(description="Write realistic WooCommerce orders for load tests.")
    p.add_argument("--count", type=int, required=True, help="number of orders (1..1000000)")
    p.add_argument("--lines", type=int, required=True, help="lines per order (at least)")
    p.add_argument("--lines-max", type=int, help="lines per order at most (default: --lines)")
    p.add_argument("--seed", type=int, required=True, help="random seed")
    p.add_argument("--invalid-share", type=float, default=0.05,
                   help="share of orders that are invalid on purpose (0..1)")
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--format", choices=("files", "array"), default="files")
    p.add_argument("--start-id", type=int, default=100000, help="id of the first order")
    p.add_argument("--manifest", help="write the expected outcome of every order here")
    p.add_argument("--floor", help="write the floor program's input here")
    args = p.parse_args(argv[1:])
    if args.lines_max is None:
        args.lines_max = args.lines
    if not 1 <= args.count <= 1000000:
        fail("--count must be 1..1000000")
    if not 1 <= args.lines <= args.lines_max <= 100:
        fail("--lines and --lines-max must satisfy 1 <= lines <= lines-max <= 100")
    if not 0 <= args.invalid_share <= 1:
        fail("--invalid-share must be between 0 and 1")
    if not 1 <= args.start_id <= 2 ** 53 - 1 - args.count:
        fail("--start-id must be a positive integer")

    cat = Catalogue()
    gen = Generator(args, cat)
    os.makedirs(args.out, exist_ok=True)
    manifest = {"seed": args.seed, "count": args.count, "source": SOURCE,
                "walk_in": cat.walk_in, "orders": []}
    everything = []
    floor_out = open(args.floor, "w", encoding="utf-8", newline="\n") if args.floor else None
    try:
        if floor_out is not None:
            floor_out.write("# cpbridge load floor v1\n")
        for order, expect, floor in gen.run():
            manifest["orders"].append(expect)
            if floor_out is not None:
                floor["item_nos"] = [item for item, _ in expect["lines"]]
                floor_out.write("\n".join(floor_records(floor)) + "\n")
            if args.format == "files":
                path = os.path.join(args.out, "%012d.json" % order["id"])
                with open(path, "w", encoding="utf-8", newline="\n") as fh:
                    fh.write(dump(order) + "\n")
            else:
                everything.append(order)
    finally:
        if floor_out is not None:
            floor_out.close()
    if args.format == "array":
        with open(os.path.join(args.out, "orders.json"), "w", encoding="utf-8",
                  newline="\n") as fh:
            fh.write(dump(everything) + "\n")
    if args.manifest:
        with open(args.manifest, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
