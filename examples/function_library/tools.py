"""A small library of functions for the function-calling example.

``describe_functions`` reads it without importing it (names, typed parameters and the
docstrings' ``Args:`` sections become tool specs); ``APIGenExecutionChecker`` runs the
generated calls against it in a restricted subprocess.
"""


def convert_temperature(value: float, unit: str = "celsius") -> float:
    """Convert a temperature between Celsius and Fahrenheit.

    Args:
        value: the temperature to convert.
        unit: the unit of value, "celsius" or "fahrenheit".
    """
    if unit == "celsius":
        return round(value * 9 / 5 + 32, 2)
    if unit == "fahrenheit":
        return round((value - 32) * 5 / 9, 2)
    raise ValueError(f"unknown unit {unit!r}; use 'celsius' or 'fahrenheit'")


def word_count(text: str) -> int:
    """Count the words of a text.

    Args:
        text: the text to count words in.
    """
    return len(text.split())


def compound_interest(principal: float, rate: float, years: int) -> float:
    """Value of an investment after compound interest, compounded yearly.

    Args:
        principal: the amount invested.
        rate: the yearly interest rate, as a fraction (0.05 for 5%).
        years: the number of years.
    """
    return round(principal * (1 + rate) ** years, 2)
