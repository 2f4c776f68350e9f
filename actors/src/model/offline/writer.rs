//! Small pieces the offline writer composes sentences with: a seeded random source (so the same
//! request always reads the same), and English helpers (lists, articles, possessives, quoting,
//! capitalisation, clipping).

/// SplitMix64: tiny, fast, and stable across versions (the offline output must not change when a
/// dependency does).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let n64 = u64::try_from(n).unwrap_or(u64::MAX);
        usize::try_from(self.next_u64() % n64).unwrap_or(0)
    }

    /// One of `items` (which must not be empty; callers pass literal lists).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let i = self.below(items.len());
        &items[i.min(items.len().saturating_sub(1))]
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    /// `items` in a shuffled order (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// "a", "a and b", "a, b and c".
pub fn and_list(items: &[String]) -> String {
    list_with(items, "and")
}

/// "a", "a or b", "a, b or c".
pub fn or_list(items: &[String]) -> String {
    list_with(items, "or")
}

fn list_with(items: &[String], word: &str) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} {word} {last}", init.join(", ")),
    }
}

/// The word with its first letter in upper case.
pub fn cap(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The text with its first letter in lower case, unless the first word looks like a name or an
/// acronym (a second capital letter, or a capital after the first word's start).
pub fn uncap(text: &str) -> String {
    let first_word = text.split_whitespace().next().unwrap_or_default();
    let capitals = first_word.chars().filter(|c| c.is_uppercase()).count();
    if capitals != 1 {
        return text.to_owned();
    }
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// "Ledgerly's", "Acme Labs'".
pub fn possessive(name: &str) -> String {
    if name.ends_with('s') && !name.ends_with("ss") { format!("{name}'") } else { format!("{name}'s") }
}

/// "a" or "an" for the word that follows.
pub fn article(next: &str) -> &'static str {
    let lower = next.to_lowercase();
    let vowel_sound = lower.starts_with(['a', 'e', 'i', 'o'])
        || (lower.starts_with('u') && !lower.starts_with("uni") && !lower.starts_with("use"))
        || lower.starts_with("hour")
        || lower.starts_with("honest");
    let first_word = next.split_whitespace().next().unwrap_or_default();
    let acronym_vowel = first_word.len() > 1
        && first_word.chars().all(|c| c.is_ascii_uppercase())
        && first_word.starts_with(['A', 'E', 'F', 'H', 'I', 'L', 'M', 'N', 'O', 'R', 'S', 'X']);
    if vowel_sound || acronym_vowel { "an" } else { "a" }
}

/// "a clean close", "an audit trail".
pub fn with_article(phrase: &str) -> String {
    format!("{} {phrase}", article(phrase))
}

/// The text ending in exactly one sentence mark.
pub fn sentence(text: &str) -> String {
    let t = text.trim().trim_end_matches([',', ';', ':', '-', '\u{2014}']).trim_end();
    let t = cap(t);
    if t.ends_with(['.', '!', '?', '\u{201d}', '"', '\u{2026}']) { t } else { format!("{t}.") }
}

/// Text in typographic quotes, with its own quotes made single and its end mark dropped.
pub fn quote(text: &str) -> String {
    let inner = text
        .trim()
        .trim_end_matches(['.', ';', ':', ','])
        .replace(['"', '\u{201c}', '\u{201d}'], "'")
        .replace('\n', " ");
    format!("\u{201c}{inner}\u{201d}")
}

/// At most `max` words of `text`, with an ellipsis when cut.
pub fn clip_words(text: &str, max: usize) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() <= max {
        return words.join(" ");
    }
    let mut out = words[..max].join(" ");
    while out.ends_with([',', ';', ':', '-']) {
        out.pop();
    }
    out.push('\u{2026}');
    out
}

/// At most `max` characters, cut at a word boundary where possible.
pub fn clip_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let cut: String = text.chars().take(max.saturating_sub(1)).collect();
    let cut = match cut.rfind(' ') {
        Some(i) if i > max / 2 => cut[..i].to_owned(),
        _ => cut,
    };
    format!("{}\u{2026}", cut.trim_end_matches([',', ';', ':', ' ']))
}

/// "once", "twice", "three times", ….
pub fn times(n: usize) -> String {
    match n {
        0 => "never".to_owned(),
        1 => "once".to_owned(),
        2 => "twice".to_owned(),
        3 => "three times".to_owned(),
        4 => "four times".to_owned(),
        5 => "five times".to_owned(),
        n => format!("{n} times"),
    }
}

/// The words of a number up to ten, digits beyond.
pub fn count_word(n: usize) -> String {
    const WORDS: [&str; 11] = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"];
    WORDS.get(n).map_or_else(|| n.to_string(), |w| (*w).to_owned())
}

/// Keeps the first of each case-insensitive duplicate, in order.
pub fn dedupe(items: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    items.into_iter().filter(|i| !i.trim().is_empty() && seen.insert(i.trim().to_lowercase())).collect()
}

/// `items` deduplicated, clipped to `max_chars` each, cut to `max` and padded from `fallback` up to
/// `min` (fallback items are used in order, skipping duplicates).
pub fn fit(items: Vec<String>, min: usize, max: usize, fallback: Vec<String>, max_chars: usize) -> Vec<String> {
    let mut out = dedupe(items.into_iter().map(|i| clip_chars(i.trim(), max_chars)).collect());
    out.truncate(max);
    if out.len() < min {
        let mut padded = out;
        padded.extend(fallback.into_iter().map(|i| clip_chars(i.trim(), max_chars)));
        out = dedupe(padded);
        out.truncate(min);
    }
    out
}

/// Nouns that take no article ("software", "cash flow", anything ending in -ing).
const MASS_NOUNS: &[&str] = &[
    "software",
    "data",
    "security",
    "compliance",
    "accounting",
    "bookkeeping",
    "payroll",
    "reporting",
    "visibility",
    "control",
    "time",
    "money",
    "support",
    "feedback",
    "research",
    "information",
    "advice",
    "equipment",
    "furniture",
    "traffic",
    "revenue",
    "growth",
    "cash",
    "flow",
    "insight",
    "care",
    "training",
    "content",
    "design",
    "marketing",
    "analytics",
    "automation",
    "intelligence",
    "health",
    "energy",
    "clothing",
    "food",
    "coffee",
    "skincare",
    "peace",
    "trust",
    "clarity",
    "speed",
    "quality",
    "pricing",
    "reconciliation",
    "onboarding",
    "work",
    "knowledge",
    "music",
    "evidence",
    "progress",
    "privacy",
    "visibility",
    "confidence",
    "freedom",
    "safety",
    "transparency",
    "simplicity",
    "accuracy",
    "efficiency",
    "productivity",
    "fitness",
    "nutrition",
    "wellbeing",
    "sustainability",
    "inventory",
    "stock",
    "hardware",
    "infrastructure",
    "governance",
    "insurance",
    "tax",
    "finance",
];

/// A key phrase made fit to stand where a noun phrase goes: plural and mass nouns as they are,
/// countable singulars with "a"/"an" ("a clean close", "bank transactions", "cash flow").
pub fn noun_phrase(phrase: &str) -> String {
    // A superlative takes "the", never "a": "the fastest trail racer".
    if phrase.split_whitespace().next().is_some_and(|w| super::lexicon::is_superlative(&w.to_lowercase())) {
        return format!("the {phrase}");
    }
    let last = phrase.split_whitespace().last().unwrap_or_default().to_lowercase();
    let first = phrase.split_whitespace().next().unwrap_or_default();
    let bare = (last.ends_with('s') && !last.ends_with("ss"))
        || last.ends_with("ing")
        || MASS_NOUNS.contains(&last.as_str())
        || first.chars().next().is_some_and(char::is_uppercase);
    if bare { phrase.to_owned() } else { with_article(phrase) }
}

/// The text up to its first colon, semicolon, dash or bracket: the part that can sit inside
/// another sentence without a second clause hanging off it. Commas stay (they join lists).
pub fn first_clause(text: &str) -> String {
    let cut = text.find([':', ';', '(', '\u{2014}', '\u{2013}']).unwrap_or(text.len());
    let cut = text.find(" - ").map_or(cut, |d| d.min(cut));
    text[..cut].trim().trim_end_matches([',', '.']).trim_end().to_owned()
}

/// The base form of a third-person predicate's verb: "closes the month" → "close the month".
pub fn base_form(predicate: &str) -> String {
    let (verb, rest) = predicate.split_once(' ').unwrap_or((predicate, ""));
    let lower = verb.to_lowercase();
    let base = match lower.as_str() {
        "is" => "be".to_owned(),
        "has" => "have".to_owned(),
        "does" => "do".to_owned(),
        "goes" => "go".to_owned(),
        v if v.ends_with("ies") && v.len() > 4 => format!("{}y", &v[..v.len() - 3]),
        v if ["sses", "shes", "ches", "xes", "zes"].iter().any(|e| v.ends_with(e)) => v[..v.len() - 2].to_owned(),
        v if v.ends_with('s') && !v.ends_with("ss") && v.len() > 2 => v[..v.len() - 1].to_owned(),
        v => v.to_owned(),
    };
    if rest.is_empty() { base } else { format!("{base} {rest}") }
}

/// Verbs a goal may start with ("double qualified demo requests").
const GOAL_VERBS: &[&str] = &[
    "increase",
    "grow",
    "double",
    "triple",
    "reach",
    "launch",
    "reduce",
    "win",
    "build",
    "get",
    "become",
    "expand",
    "improve",
    "drive",
    "generate",
    "convert",
    "raise",
    "retain",
    "sell",
    "hit",
    "enter",
    "capture",
    "attract",
    "boost",
    "cut",
    "lower",
    "establish",
    "create",
    "open",
    "land",
    "sign",
    "book",
    "scale",
    "acquire",
    "position",
    "be",
    "make",
    "earn",
    "keep",
    "lift",
    "halve",
    "shorten",
    "move",
    "own",
    "break",
    "add",
    "hire",
    "ship",
];

/// Whether a goal starts with a verb ("double demo requests") rather than a noun ("more leads").
pub fn goal_is_verb(goal: &str) -> bool {
    let first = goal.split_whitespace().next().unwrap_or_default().to_lowercase();
    GOAL_VERBS.contains(&first.as_str())
}

/// A goal as it follows "the goal": "to double demo requests" or "of more qualified leads".
pub fn goal_ref(goal: &str) -> String {
    let g = uncap(goal.trim().trim_end_matches(['.', '!']));
    if goal_is_verb(&g) { format!("to {g}") } else { format!("of {g}") }
}

/// A goal as something to do: "double demo requests", "reach more qualified leads".
pub fn goal_action(goal: &str) -> String {
    let g = uncap(goal.trim().trim_end_matches(['.', '!']));
    if goal_is_verb(&g) { g } else { format!("reach {g}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_helpers() {
        assert_eq!(and_list(&["a".into(), "b".into(), "c".into()]), "a, b and c");
        assert_eq!(or_list(&["a".into(), "b".into()]), "a or b");
        assert_eq!(possessive("Ledgerly"), "Ledgerly's");
        assert_eq!(possessive("Acme Labs"), "Acme Labs'");
        assert_eq!(with_article("audit trail"), "an audit trail");
        assert_eq!(with_article("unified ledger"), "a unified ledger");
        assert_eq!(with_article("SaaS tool"), "a SaaS tool");
        assert_eq!(with_article("FAQ page"), "an FAQ page");
        assert_eq!(sentence("closes the month"), "Closes the month.");
        assert_eq!(quote("Fastest \"books\" ever."), "\u{201c}Fastest 'books' ever\u{201d}");
        assert_eq!(uncap("Finance leads"), "finance leads");
        assert_eq!(uncap("CFOs"), "CFOs");
        assert_eq!(clip_words("one two three four", 2), "one two\u{2026}");
        assert_eq!(fit(vec!["x".into(), "X".into()], 2, 3, vec!["y".into(), "z".into()], 100), vec!["x", "y"]);
        assert_eq!(noun_phrase("clean close"), "a clean close");
        assert_eq!(noun_phrase("bank transactions"), "bank transactions");
        assert_eq!(noun_phrase("cash flow"), "cash flow");
        assert_eq!(noun_phrase("fastest trail racer"), "the fastest trail racer");
        assert_eq!(noun_phrase("best books"), "the best books");
        assert_eq!(noun_phrase("forest loop"), "a forest loop");
        assert_eq!(
            first_clause("makes shoes for people who run: muddy loops, at dawn"),
            "makes shoes for people who run"
        );
        assert_eq!(first_clause("closes the month in a day, not a week"), "closes the month in a day, not a week");
        assert_eq!(base_form("closes the month"), "close the month");
        assert_eq!(base_form("matches and flags"), "match and flags");
        assert_eq!(base_form("carries weight"), "carry weight");
        assert_eq!(goal_ref("Double demo requests."), "to double demo requests");
        assert_eq!(goal_ref("More qualified leads"), "of more qualified leads");
    }

    #[test]
    fn the_random_source_is_stable() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(Rng::new(43).next_u64(), xs[0]);
        assert!(a.below(3) < 3);
    }
}
