#!/usr/bin/python3
"""The comparison for bench/grant-report: the same workbook sheets as
ip2a-ops grant-report, written with openpyxl in write-only mode from the
same database (psycopg2), the way the original Python report would be
written if done with care: one REPEATABLE READ READ ONLY snapshot, totals
summed in SQL, server-side cursors so rows are not all held in memory,
money as numbers with a currency format, dates as dates.

usage: grant_report_openpyxl.py DATABASE_URL GRANT_ID OUT.xlsx
"""
import datetime
import decimal
import sys

import psycopg2
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font

MONEY = '"$"#,##0.00_);[Red]-"$"#,##0.00_)'
DATE = "yyyy-mm-dd"
LIVE = "NOT {0}.is_deleted AND {0}.deleted_at IS NULL"


def main():
    url, grant_id, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    conn = psycopg2.connect(url)
    conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
    cur = conn.cursor()
    wb = Workbook(write_only=True)
    bold = Font(bold=True)

    def cell(ws, v, fmt=None, font=None):
        c = WriteOnlyCell(ws, value=v)
        if fmt:
            c.number_format = fmt
        if font:
            c.font = font
        return c

    def header(ws, names):
        ws.freeze_panes = "A2"
        ws.append([cell(ws, n, font=bold) for n in names])

    cur.execute("SELECT name, grant_number, total_amount, start_date FROM grants WHERE id = %s", (grant_id,))
    name, number, budget, start = cur.fetchone()
    cur.execute(
        "SELECT count(*), coalesce(sum(total_price), 0) FROM expenses x WHERE x.grant_id = %s AND " + LIVE.format("x"),
        (grant_id,))
    n_exp, spent = cur.fetchone()
    cur.execute(
        "SELECT count(*), count(*) FILTER (WHERE lower(status::text) IN ('withdrawn','dropped')),"
        " count(*) FILTER (WHERE lower(status::text) = 'completed') FROM grant_enrollments ge WHERE ge.grant_id = %s AND "
        + LIVE.format("ge"), (grant_id,))
    n_enr, attrition, completed = cur.fetchone()

    ws = wb.create_sheet("Summary")
    ws.append([cell(ws, "Grant report: " + name, font=bold)])
    for label, v, fmt in [
        ("Number", number, None), ("Start date", start, DATE), ("Enrolled", n_enr, None),
        ("Completed", completed, None), ("Attrition", attrition, None),
        ("Retention rate", (n_enr - attrition) / n_enr if n_enr else None, "0.00%"),
        ("Budget", budget, MONEY), ("Spent", spent, MONEY), ("Remaining", budget - spent, MONEY),
        ("Utilization", spent / budget if budget else None, "0.00%"),
    ]:
        ws.append([label, cell(ws, v, fmt)])

    ws = wb.create_sheet("Enrollments")
    header(ws, ["Student number", "Last name", "First name", "Enrolled", "Status", "Completed", "Outcome",
                "Outcome date", "Placement employer", "Placement date", "Placement wage", "Job title", "Notes"])
    big = conn.cursor(name="enrollments")
    big.itersize = 5000
    big.execute(
        "SELECT s.student_number, m.last_name, m.first_name, ge.enrollment_date, ge.status::text, ge.completion_date,"
        " ge.outcome::text, ge.outcome_date, ge.placement_employer, ge.placement_date, ge.placement_wage,"
        " ge.placement_job_title, ge.notes FROM grant_enrollments ge LEFT JOIN students s ON s.id = ge.student_id"
        " LEFT JOIN members m ON m.id = s.member_id WHERE ge.grant_id = %s AND " + LIVE.format("ge") +
        " ORDER BY ge.enrollment_date, s.student_number, ge.id", (grant_id,))
    date_cols = {3, 5, 7, 9}
    for row in big:
        ws.append([cell(ws, v, DATE) if i in date_cols and v is not None else v for i, v in enumerate(row)])
    big.close()

    ws = wb.create_sheet("Expenses")
    header(ws, ["Purchased", "Item", "Category", "Vendor", "Description", "Quantity", "Unit price", "Discount",
                "Tax", "Total", "Payment method", "Receipt number", "Student number", "Notes"])
    big = conn.cursor(name="expenses")
    big.itersize = 5000
    big.execute(
        "SELECT x.purchased_at, x.item, x.category, x.vendor, x.description, x.quantity, x.unit_price, x.discount,"
        " x.tax, x.total_price, x.payment_method::text, x.receipt_number, s.student_number, x.notes"
        " FROM expenses x LEFT JOIN students s ON s.id = x.student_id WHERE x.grant_id = %s AND " + LIVE.format("x") +
        " ORDER BY x.purchased_at, x.id", (grant_id,))
    for row in big:
        out_row = list(row)
        out_row[0] = cell(ws, row[0], DATE)
        for i in (6, 7, 8, 9):
            if row[i] is not None:
                out_row[i] = cell(ws, row[i], MONEY)
        ws.append(out_row)
    big.close()

    ws = wb.create_sheet("Expenses by category")
    header(ws, ["Category", "Expenses", "Spent", "Share of spend"])
    cur.execute(
        "SELECT category, count(*), sum(total_price) FROM expenses x WHERE x.grant_id = %s AND " + LIVE.format("x") +
        " GROUP BY category ORDER BY 3 DESC", (grant_id,))
    for cat, n, total in cur.fetchall():
        ws.append([cat or "(no category)", n, cell(ws, total, MONEY), cell(ws, total / spent if spent else None, "0.00%")])

    ws = wb.create_sheet("Notes")
    header(ws, ["Topic", "Note"])
    ws.append(["Generated", "by grant_report_openpyxl.py at " + datetime.datetime.utcnow().isoformat()])

    conn.rollback()
    wb.save(out)
    print(f"{out}: {n_enr} enrollments, {n_exp} expenses, spent {spent}")


if __name__ == "__main__":
    decimal.getcontext().prec = 28
    main()
