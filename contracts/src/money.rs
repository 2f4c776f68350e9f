//! `Money { minor, currency }`: an exact amount in the currency's minor unit (cents for USD,
//! yen for JPY, fils for KWD). Never a float. On the wire it is `{"amount": "1500.00",
//! "currency": "USD"}` — a decimal string, so no client loses precision — and in PostgreSQL a
//! `numeric` beside a `char(3)` currency.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::InvalidValue;

/// ISO 4217 currencies Flywheel accepts, with their minor-unit exponents.
const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("BHD", 3),
    ("BRL", 2),
    ("CAD", 2),
    ("CHF", 2),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("CZK", 2),
    ("DKK", 2),
    ("EGP", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("HKD", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("ISK", 0),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("MAD", 2),
    ("MXN", 2),
    ("MYR", 2),
    ("NGN", 2),
    ("NOK", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PEN", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("QAR", 2),
    ("RON", 2),
    ("SAR", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("THB", 2),
    ("TND", 3),
    ("TRY", 2),
    ("TWD", 2),
    ("UAH", 2),
    ("USD", 2),
    ("VND", 0),
    ("ZAR", 2),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency {
    code: [u8; 3],
    exponent: u8,
}

impl Currency {
    pub fn parse(code: &str) -> Result<Self, InvalidValue> {
        CURRENCIES
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(c, exponent)| {
                let b = c.as_bytes();
                Self { code: [b[0], b[1], b[2]], exponent: *exponent }
            })
            .ok_or_else(|| {
                InvalidValue::new(format!("unknown or unsupported currency {code:?} (ISO 4217, e.g. \"USD\")"))
            })
    }
    pub fn code(&self) -> &str {
        // The bytes come from the ASCII table above.
        std::str::from_utf8(&self.code).unwrap_or("XXX")
    }
    /// Digits after the decimal point of one minor unit (2 for USD, 0 for JPY).
    pub fn exponent(&self) -> u8 {
        self.exponent
    }

    /// Every currency Flywheel accepts.
    pub fn all() -> impl Iterator<Item = Currency> {
        CURRENCIES.iter().filter_map(|(code, _)| Currency::parse(code).ok())
    }
}

impl TryFrom<String> for Currency {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.code().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    /// Parses a decimal amount ("1500", "1500.5", "1500.50", "-3.25") in `currency`. More
    /// fraction digits than the currency has is an error, never a silent rounding.
    pub fn parse(amount: &str, currency: Currency) -> Result<Self, InvalidValue> {
        let exp = usize::from(currency.exponent());
        let (negative, digits) = match amount.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, amount),
        };
        let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !all_digits(whole) || !all_digits(frac) || (digits.contains('.') && frac.is_empty()) {
            return Err(InvalidValue::new(format!("{amount:?} is not a decimal amount like \"1500.00\"")));
        }
        if frac.len() > exp {
            return Err(InvalidValue::new(format!(
                "{} takes at most {exp} decimal places, got {amount:?}",
                currency.code()
            )));
        }
        let overflow = || InvalidValue::new(format!("{amount:?} is too large"));
        let mut minor: i64 = whole.parse().map_err(|_| overflow())?;
        for _ in 0..exp {
            minor = minor.checked_mul(10).ok_or_else(overflow)?;
        }
        let mut frac_minor: i64 = if frac.is_empty() { 0 } else { frac.parse().map_err(|_| overflow())? };
        for _ in frac.len()..exp {
            frac_minor *= 10;
        }
        minor = minor.checked_add(frac_minor).ok_or_else(overflow)?;
        // Amounts must fit numeric(20, 4) in PostgreSQL: 16 integer digits.
        if minor.unsigned_abs() / 10u64.pow(u32::from(currency.exponent())) >= 10u64.pow(16) {
            return Err(overflow());
        }
        Ok(Self { minor: if negative { -minor } else { minor }, currency })
    }

    /// The amount as an exact decimal string with the currency's number of places.
    pub fn amount(&self) -> String {
        let exp = u32::from(self.currency.exponent());
        let unit = 10u64.pow(exp);
        let abs = self.minor.unsigned_abs();
        let sign = if self.minor < 0 { "-" } else { "" };
        if exp == 0 {
            format!("{sign}{abs}")
        } else {
            format!("{sign}{}.{:0width$}", abs / unit, abs % unit, width = exp as usize)
        }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount(), self.currency)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MoneyWire {
    amount: String,
    currency: Currency,
}

impl Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        MoneyWire { amount: self.amount(), currency: self.currency }.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = MoneyWire::deserialize(d)?;
        Money::parse(&w.amount, w.currency).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> Currency {
        Currency::parse("USD").expect("USD is listed")
    }

    #[test]
    fn parses_exact_amounts() {
        assert_eq!(Money::parse("1500", usd()).map(|m| m.minor), Ok(150_000));
        assert_eq!(Money::parse("1500.5", usd()).map(|m| m.minor), Ok(150_050));
        assert_eq!(Money::parse("0.07", usd()).map(|m| m.minor), Ok(7));
        assert_eq!(Money::parse("-3.25", usd()).map(|m| m.minor), Ok(-325));
        let jpy = Currency::parse("JPY").expect("JPY is listed");
        assert_eq!(Money::parse("1200", jpy).map(|m| m.amount()), Ok("1200".into()));
        let kwd = Currency::parse("KWD").expect("KWD is listed");
        assert_eq!(Money::parse("1.5", kwd).map(|m| m.amount()), Ok("1.500".into()));
    }

    #[test]
    fn refuses_what_it_cannot_hold_exactly() {
        for bad in ["", ".5", "1.", "1.234", "1e3", "1,000", "abc", "99999999999999999999"] {
            assert!(Money::parse(bad, usd()).is_err(), "{bad}");
        }
        assert!(Money::parse("1", Currency::parse("JPY").expect("listed")).is_ok());
        assert!(Money::parse("1.0", Currency::parse("JPY").expect("listed")).is_err());
        assert!(Currency::parse("usd").is_err());
        assert!(Currency::parse("XYZ").is_err());
    }

    #[test]
    fn round_trips_through_json() {
        let m = Money::parse("1500.50", usd()).expect("valid");
        let v = serde_json::to_value(m).expect("serializes");
        assert_eq!(v, serde_json::json!({"amount": "1500.50", "currency": "USD"}));
        assert_eq!(serde_json::from_value::<Money>(v).ok(), Some(m));
    }
}
