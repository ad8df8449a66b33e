"""Number formatting for the tables."""



def fmt_rate(v):
    if v >= 1e6:
        return f"{v / 1e6:.2f} M"
    if v >= 1e3:
        return f"{v / 1e3:.1f} k"
    return f"{v:.0f}"


def fmt_us(v):
    if v is None:
        return "–"
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"


def fmt_cpu(v):
    return "–" if v is None else f"{v:.2f}"


def fmt_ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}"


def fmt_ratio_of_ratios(a, b, c, d):
    """(a / b) / (c / d), or "–" where a figure is missing or a divisor is zero."""
    if None in (a, b, c, d) or b == 0 or c == 0 or d == 0:
        return "–"
    return fmt_ratio(a / b, c / d)

def fmt_mib(kb):
    return "–" if kb is None else f"{kb / 1024:.1f}"


def fmt_ms(us):
    return "–" if us is None else f"{us / 1000:.1f}"


def fmt_diff(v):
    """A signed difference rounded to a whole number: "+1,234", "-56", and "+0" for what
    rounds to zero (not "-0")."""
    return f"{round(v):+,}"
