//! The offline answers to the Branding tasks, composed from a [`Brief`] of the tenant's inputs.
//! Every list is built from what the inputs say (the company's phrases and sentences, the
//! competitors' claims, the goals, the audiences named), in sentence shapes picked by the seeded
//! random source, then fitted to the task's schema bounds.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::analysis::{Brief, Rival, TextProfile, is_instruction, sentences, texts_of, tokenize};
use super::lexicon::{self, Kind, Sector};
use super::writer::{
    Rng, and_list, base_form, cap, clip_words, count_word, first_clause, fit, goal_action, goal_ref, noun_phrase,
    or_list, possessive, quote, sentence, times, uncap, with_article,
};

/// Characters of one list item, at most (the schemas allow 400).
const ITEM: usize = 380;

/// The content words of a phrase (lowercased).
fn words_of(phrase: &str) -> Vec<String> {
    tokenize(phrase).into_iter().map(|t| t.lower).filter(|w| w.chars().count() >= 3).collect()
}

/// Whether two texts share a content word of four letters or more.
fn shares_word(a: &str, b: &str) -> bool {
    let wa: HashSet<String> =
        words_of(a).into_iter().filter(|w| w.chars().count() >= 4 && !lexicon::is_stopword(w)).collect();
    words_of(b).iter().any(|w| wa.contains(w))
}

fn rivals_with_text(b: &Brief) -> Vec<&Rival> {
    b.rivals.iter().filter(|r| r.has_text).collect()
}

/// Joins a few clauses the way a person would: "a, and b"; "a; b"; "a, b, and c".
fn join_clauses(parts: &[String], rng: &mut Rng) -> String {
    match parts {
        [] => String::new(),
        [one] => one.clone(),
        [a, b] => {
            if rng.chance(50) {
                format!("{a}, and {b}")
            } else {
                format!("{a}; {b}")
            }
        }
        [init @ .., last] => format!("{}, and {last}", init.join(", ")),
    }
}

/// "BooksFast leads" / "BooksFast and CountWise lead".
fn verb_for(names: &[String], singular: &str, plural: &str) -> String {
    if names.len() == 1 { singular.to_owned() } else { plural.to_owned() }
}

/// "BooksFast never mentions it" / "neither A nor B mentions it" / "none of A, B or C mentions
/// it", with `verb` in the singular ("mentions").
fn none_of(names: &[String], verb: &str, object: &str) -> String {
    match names {
        [] => format!("no competitor {verb} {object}"),
        [one] => format!("{one} never {verb} {object}"),
        [a, b] => format!("neither {a} nor {b} {verb} {object}"),
        more => format!("none of {} {verb} {object}", or_list(more)),
    }
}

/// A competitor's claim, quoted and short.
fn claim_quote(claim: &str) -> String {
    quote(&clip_words(claim, 16))
}

/// The competitor's superlatives with the noun they describe ("fastest carbon-plated trail
/// racer"), or alone when no noun follows in the same clause ("fastest"). Never across a comma or
/// colon, never ending on an adjective.
pub(super) fn superlatives(rival: &Rival) -> Vec<String> {
    let mut out = Vec::new();
    for s in &rival.profile.sentences {
        for clause in s.split([',', ';', ':', '(', ')', '\u{2014}', '\u{2013}']) {
            let tokens = tokenize(clause);
            for (i, t) in tokens.iter().enumerate() {
                if !lexicon::is_claim_marker(&t.lower)
                    || ["every", "first", "most", "only", "number", "free", "world", "top"].contains(&t.lower.as_str())
                {
                    continue;
                }
                // The words after it up to the last noun of an unbroken run of content words.
                let run: Vec<&str> = tokens[i + 1..]
                    .iter()
                    .take(4)
                    .take_while(|n| !lexicon::is_stopword(&n.lower) && !lexicon::is_verbish(&n.lower))
                    .map(|n| n.lower.as_str())
                    .collect();
                let end = run.iter().rposition(|w| !lexicon::is_adjective_like(w)).map_or(0, |e| e + 1);
                let mut words = vec![t.lower.as_str()];
                words.extend(&run[..end]);
                let phrase = words.join(" ");
                if !out.contains(&phrase) {
                    out.push(phrase);
                }
            }
        }
    }
    out
}

/// What the company does for its readers, as a predicate ("closes the month in a day"); from its
/// own sentences when it has some.
fn benefit(b: &Brief, rng: &mut Rng) -> Option<String> {
    let does = b.does();
    if does.is_empty() {
        return None;
    }
    // Prefer the first statement; sometimes the second, so the same company reads differently
    // across tasks.
    let i = if does.len() > 1 && rng.chance(30) { 1 } else { 0 };
    // Only its first clause: it sits inside a longer sentence ("…, for whom it makes …").
    does.get(i).map(|d| {
        let clause = first_clause(d);
        clip_words(if clause.split_whitespace().count() >= 2 { &clause } else { d }, 24)
    })
}

/// Words that start an "our …" sentence about people rather than about the product.
const PEOPLE: &[&str] = &[
    "customers",
    "clients",
    "users",
    "team",
    "people",
    "members",
    "partners",
    "staff",
    "founders",
    "community",
    "readers",
    "buyers",
    "guests",
    "patients",
    "students",
];

/// A feature as a value proposition: "A reconciliation engine that matches…", or, when the
/// sentence is about people or has no recognisable verb, "Ledgerly's customers train…".
fn feature_prop(name: &str, feature: &str) -> String {
    let first = feature.split_whitespace().next().unwrap_or_default().to_lowercase();
    let phrase = feature_phrase(feature);
    if PEOPLE.contains(&first.as_str()) || !phrase.contains(" that ") {
        sentence(&format!("{} {feature}", possessive(name)))
    } else {
        sentence(&cap(&phrase))
    }
}

/// A feature sentence made into a noun phrase with a relative clause: "reconciliation engine
/// matches…" → "a reconciliation engine that matches…".
fn feature_phrase(feature: &str) -> String {
    let words: Vec<&str> = feature.split_whitespace().collect();
    let verb_at = words.iter().enumerate().skip(1).find_map(|(i, w)| {
        let lower = w.to_lowercase();
        let is_verb = lexicon::is_verbish(&lower)
            || (lower.ends_with('s') && !lower.ends_with("ss") && i + 1 < words.len() && i <= 3);
        is_verb.then_some(i)
    });
    match verb_at {
        Some(i) => {
            let noun = words[..i].join(" ");
            let rest = words[i..].join(" ");
            format!("{} that {rest}", with_article(&noun))
        }
        None => with_article(feature),
    }
}

/// The countable category with its article ("a platform"), a mass one without ("software").
fn category_np(b: &Brief) -> String {
    noun_phrase(&b.category)
}

pub fn research(b: &Brief, rng: &mut Rng) -> Value {
    let name = &b.name;
    let goals = b.goals();
    let with_text = rivals_with_text(b);

    // Themes: the company's own recurring phrases, each with what makes it matter.
    let mut themes = Vec::new();
    let turn = rng.below(3);
    for (i, p) in b.themes(4).iter().enumerate() {
        let count = b.topics.iter().find(|x| &x.text == p).map_or(0, |x| x.count);
        let users: Vec<String> = with_text
            .iter()
            .filter(|r| words_of(p).iter().all(|w| r.profile.words.contains(w)))
            .map(|r| r.name.clone())
            .collect();
        let mut facts = Vec::new();
        if count >= 2 {
            facts.push(match rng.below(2) {
                0 => format!("{} material returns to it {}", possessive(name), times(count)),
                _ => format!("it comes up {} in the material", times(count)),
            });
        }
        if !users.is_empty() {
            facts.push(format!(
                "{} {} it too, so it needs sharper proof",
                and_list(&users),
                verb_for(&users, "uses", "use")
            ));
        } else if !with_text.is_empty() && rng.chance(70) {
            facts.push(
                [
                    "no competitor in the set uses it",
                    "it is absent from every competitor's copy",
                    "the competitors never mention it",
                ][(turn + i) % 3]
                    .to_owned(),
            );
        }
        if let Some(g) = goals.iter().find(|g| shares_word(g, p)) {
            facts.push(format!("it ties directly to the goal {}", goal_ref(g)));
        }
        if facts.is_empty() {
            facts.push(match i {
                0 => format!("the idea {} own copy leads with", possessive(name)),
                _ => [
                    "a recurring idea in the material",
                    "a thread worth keeping in every message",
                    "part of how the company already explains itself",
                ][(turn + i) % 3]
                    .to_owned(),
            });
        }
        let gloss = join_clauses(&facts, rng);
        themes.push(if rng.chance(50) {
            format!("{}: {gloss}", cap(p))
        } else {
            format!("{} \u{2014} {gloss}", cap(p))
        });
    }
    if let Some(g) = goals.first() {
        themes.push(match rng.below(2) {
            0 => format!("{}, the commercial thread every message has to serve", cap(g.trim_end_matches('.'))),
            _ => format!("The goal {} decides what the brand says first", goal_ref(g)),
        });
    }
    let theme_fallback = vec![
        format!("{} for {}: the frame every message sits in", cap(&b.category), b.audience()),
        format!("What {} expect from {}: {}", b.audience(), category_np(b), and_list(&baseline(b))),
    ];

    // Claims: what competitors lead with, quoted, then what the company itself claims.
    let mut claims = Vec::new();
    let per_rival = if with_text.len() >= 3 { 1 } else { 2 };
    let mut turn = rng.below(4);
    for r in &with_text {
        for c in r.claims.iter().take(per_rival) {
            let q = claim_quote(c);
            turn += 1;
            claims.push(match turn % 4 {
                0 => format!("{} leads with {q}", r.name),
                1 => format!("{} promises {q}", r.name),
                2 => format!("{} headline claim: {q}", possessive(&r.name)),
                _ => format!("{} pitches itself with {q}", r.name),
            });
        }
    }
    let silent: Vec<String> = b.rivals.iter().filter(|r| !r.has_text).map(|r| r.name.clone()).collect();
    let turn = rng.below(3);
    for (j, p) in b.proof.iter().take(2).enumerate() {
        let q = claim_quote(p);
        claims.push(match (turn + j) % 3 {
            0 => format!("{} own material claims {q}", possessive(name)),
            1 => format!("{name} already says {q}"),
            _ => format!("In its own words, {name}: {q}"),
        });
    }
    if !silent.is_empty() {
        claims.push(format!(
            "No material was supplied for {}, so {} claims are still unknown",
            and_list(&silent),
            if silent.len() == 1 { "its" } else { "their" }
        ));
    }
    let mut claim_fallback = Vec::new();
    for d in b.does().iter().take(2) {
        claim_fallback.push(format!("{name} says it {}", clip_words(d, 18)));
    }
    claim_fallback.push(format!("The usual promise in {}: {}", b.category, and_list(&baseline(b))));
    claim_fallback.push(format!("{name} has not yet published a claim it can back with a number"));

    // Gaps: what the company has that no competitor talks about, and what is table stakes.
    let mut gaps = Vec::new();
    let rival_names: Vec<String> = with_text.iter().map(|r| r.name.clone()).collect();
    let turn = rng.below(3);
    for (j, p) in b.uncontested.iter().take(3).enumerate() {
        gaps.push(match (turn + j) % 3 {
            0 => format!("{}: open ground for {name}", cap(&none_of(&rival_names, "mentions", p))),
            1 => format!("Nobody else in the set talks about {}; {name} can make it its own", noun_phrase(p)),
            _ => format!("{} appears nowhere in the competitors' copy", cap(p)),
        });
    }
    let turn = rng.below(2);
    for (j, c) in b.crowded.iter().take(2).enumerate() {
        gaps.push(match (turn + j) % 2 {
            0 => format!("{} is table stakes (several players claim it), so it cannot be the headline", cap(c)),
            _ => format!("Everyone says {c}; saying it louder will not set {name} apart"),
        });
    }
    if let Some(a) = b.audiences.first()
        && a.own > 0
        && a.rivals == 0
        && !with_text.is_empty()
    {
        gaps.push(format!("None of the competitors writes for {} directly", a.label));
    }
    if b.proof.is_empty() {
        gaps.push(format!("{} material makes promises without a figure a buyer could check", possessive(name)));
    }
    let mut gap_fallback = Vec::new();
    if with_text.is_empty() && !b.rivals.is_empty() {
        gap_fallback.push(format!(
            "Without copy from {}, the gaps are provisional until their pages are read",
            and_list(&b.rival_names())
        ));
    }
    for g in &goals {
        if !words_of(g).iter().any(|w| b.own.words.contains(w)) {
            gap_fallback.push(format!("Nothing in the current material speaks to the goal {}", goal_ref(g)));
        }
    }
    gap_fallback.push(format!("No one in {} owns a clear story for {} yet", b.category, b.audience()));
    gap_fallback.push(format!(
        "{} has no stated point of view on {}",
        name,
        b.themes(1).first().cloned().unwrap_or_else(|| b.category.clone())
    ));

    // Audience signals: who the material speaks to and what it says they struggle with.
    let mut signals = Vec::new();
    let turn = rng.below(3);
    for (j, a) in b.audiences.iter().filter(|a| a.own > 0).take(3).enumerate() {
        let base = match (turn + j) % 3 {
            0 => format!("{} are named {} in {} material", cap(&a.label), times(a.own), possessive(name)),
            1 => format!(
                "The copy speaks to {} directly ({} mention{})",
                a.label,
                a.own,
                if a.own == 1 { "" } else { "s" }
            ),
            _ => format!("{} show up as the reader {name} writes for", cap(&a.label)),
        };
        signals.push(if a.rivals > 0 { format!("{base}; competitors court them too") } else { base });
    }
    for p in b.pains.iter().take(2) {
        signals.push(match rng.below(2) {
            0 => format!("A pain in the material's own words: {}", quote(&clip_words(p, 18))),
            _ => format!("What hurts today, per the material: {}", quote(&clip_words(p, 18))),
        });
    }
    for r in &with_text {
        if let Some(a) = &r.audience
            && b.audiences.first().is_none_or(|ours| &ours.label != a)
        {
            signals.push(format!("{} aims at {a}, a different reader from {}", r.name, b.audience()));
        }
    }
    let named = b.audiences.iter().any(|a| a.own > 0);
    let mut signal_fallback = Vec::new();
    if !named {
        signal_fallback.push(format!(
            "No reader is named outright; {} are the likely buyers of {}",
            audience_label(b, 0),
            category_np(b)
        ));
    }
    signal_fallback.push(format!(
        "The goal {} points at readers who are ready to act now",
        goal_ref(goals.first().map_or("grow", String::as_str))
    ));
    signal_fallback.push(format!(
        "{} and {} are the next readers to test",
        cap(&audience_label(b, 1)),
        audience_label(b, 2)
    ));

    json!({
        "themes": fit(themes, 2, 8, theme_fallback, ITEM),
        "claims": fit(claims, 2, 8, claim_fallback, ITEM),
        "gaps": fit(gaps, 2, 8, gap_fallback, ITEM),
        "audience_signals": fit(signals, 2, 8, signal_fallback, ITEM),
    })
}

fn audience_label(b: &Brief, i: usize) -> String {
    b.audiences.get(i).or(b.audiences.first()).map_or_else(|| "owners".to_owned(), |a| a.label.clone())
}

fn baseline(b: &Brief) -> Vec<String> {
    lexicon::profile(b.sector).baseline.iter().map(|s| (*s).to_owned()).collect()
}

/// The positioning's parts, shared by `positioning` and `refine`.
struct Positioning {
    statement: Vec<String>,
    value_props: Vec<String>,
    differentiators: Vec<String>,
    proof_points: Vec<String>,
}

fn compose_positioning(b: &Brief, rng: &mut Rng) -> Positioning {
    let name = &b.name;
    let audience = b.audience();
    let cat = category_np(b);
    let themes = b.themes(4);
    let features = b.features();
    let with_text = rivals_with_text(b);
    let rival_names: Vec<String> = b.rival_names();

    // Sentence 1: who it is for and what it does for them.
    let first = match benefit(b, rng) {
        // The predicate names the reader already ("makes shoes for people who run before work").
        Some(does) if does.to_lowercase().contains(&audience.to_lowercase()) => match rng.below(2) {
            0 => format!("{name} is the {} that {does}.", b.category),
            _ => format!("{name} is {cat} that {does}."),
        },
        Some(does) => match rng.below(3) {
            0 => format!("{name} is the {} for {audience}: it {does}.", b.category),
            1 => format!("For {audience}, {name} is the {} that {does}.", b.category),
            _ if matches!(b.sector, Sector::Consumer | Sector::Services) => {
                format!("{name} is the {} that {does}, for {audience} first.", b.category)
            }
            _ => format!("{name} gives {audience} {cat} that {does}."),
        },
        None => match (features.first(), themes.first()) {
            (Some(f), _) => format!("{name} is the {} for {audience}, built on {}.", b.category, feature_phrase(f)),
            (None, Some(t)) => match rng.below(2) {
                0 => format!("{name} is the {} that puts {} within reach of {audience}.", b.category, noun_phrase(t)),
                _ => format!("For {audience}, {name} is the {} built around {}.", b.category, noun_phrase(t)),
            },
            (None, None) => format!("{name} is {cat} made for {audience}."),
        },
    };
    let mut statement = vec![first];

    // Sentence 2: the contrast with the competitors.
    let edge = b
        .uncontested
        .first()
        .map(|u| noun_phrase(u))
        .or_else(|| features.first().map(|f| feature_phrase(f)))
        .or_else(|| themes.get(1).or(themes.first()).map(|t| noun_phrase(t)));
    // What the competitors lead with: a phrase several share, else the first one's own phrase —
    // and then only that one competitor is named beside it.
    let (their_focus, focus_of) = match b.crowded.first() {
        Some(c) => (Some(noun_phrase(c)), None),
        None => with_text
            .iter()
            .find_map(|r| {
                r.profile
                    .phrases
                    .iter()
                    .find(|p| !super::analysis::is_audience_like(p))
                    .map(|p| (Some(noun_phrase(&p.text)), Some(r.name.clone())))
            })
            .unwrap_or((None, None)),
    };
    let talking: Vec<String> = with_text.iter().map(|r| r.name.clone()).collect();
    let rival_names = match focus_of {
        Some(one) => vec![one],
        None if talking.is_empty() => rival_names,
        None => talking,
    };
    if let Some(edge) = &edge
        && !rival_names.is_empty()
    {
        let who = and_list(&rival_names);
        statement.push(match (&their_focus, rng.below(3)) {
            (Some(focus), 0) => format!(
                "Unlike {who}, which {} with {focus}, {name} is built around {edge}.",
                verb_for(&rival_names, "leads", "lead")
            ),
            (Some(focus), 1) => {
                format!("Where {who} {} {focus}, {name} puts {edge} first.", verb_for(&rival_names, "sells", "sell"))
            }
            (Some(focus), _) => format!(
                "{who} {} on {focus}; {name} competes on {edge}.",
                verb_for(&rival_names, "competes", "compete")
            ),
            (None, 0) => format!("Unlike {who}, {name} is built around {edge}."),
            (None, _) => format!(
                "What {who} {} is {edge}, and that is where {name} starts.",
                verb_for(&rival_names, "lacks", "lack")
            ),
        });
    } else if let Some(edge) = &edge {
        statement.push(format!("Everything it says starts from {edge}."));
    }

    // Sentence 3: the goal it serves, sometimes the proof.
    if let Some(g) = b.company.goals.first() {
        let s = match rng.below(3) {
            0 => format!("That focus is how {name} will {}.", goal_action(g)),
            1 => format!("It is the message that has to {} for {name}.", goal_action(g)),
            _ => format!("Every line of it serves one aim: to {}.", goal_action(g)),
        };
        statement.push(s);
    }
    if statement.len() < 2 {
        statement.push(format!(
            "It speaks to {audience} in their own terms and backs each promise with something they can check."
        ));
    }
    statement.truncate(4);

    // Value propositions: the company's own predicates and features, then its themes.
    let mut value_props: Vec<String> = b.does().iter().take(3).map(|d| sentence(&cap(&clip_words(d, 28)))).collect();
    value_props.extend(features.iter().take(2).map(|f| feature_prop(name, &clip_words(f, 26))));
    let turn = rng.below(3);
    for (j, t) in themes.iter().take(2).enumerate() {
        value_props.push(match (turn + j) % 3 {
            0 => format!("{}, made for how {audience} actually {}", cap(t), if consumer(b) { "live" } else { "work" }),
            1 => format!("{} without the usual trade-offs", cap(t)),
            _ => format!("{} that {audience} can see from day one", cap(t)),
        });
    }
    let vp_fallback = vec![
        format!("One place for {} to get {} right", audience, b.category),
        format!("Set up in days, not months, by {audience} themselves"),
        format!("{} that stays out of the way", cap(&b.category)),
    ];

    // Differentiators: what the competitors' material does not have.
    let mut differentiators = Vec::new();
    let names_with_text: Vec<String> = with_text.iter().map(|r| r.name.clone()).collect();
    let turn = rng.below(2);
    for (j, u) in b.uncontested.iter().take(3).enumerate() {
        differentiators.push(match (turn + j) % 2 {
            0 => format!("{} \u{2014} {}", cap(u), none_of(&names_with_text, "offers", "it")),
            _ => format!("{}: {}", cap(u), none_of(&names_with_text, "talks about", "it")),
        });
    }
    for r in &with_text {
        if let (Some(theirs), Some(ours)) = (&r.audience, b.audiences.first())
            && theirs != &ours.label
        {
            differentiators.push(format!("Written for {}, where {} speaks to {theirs}", ours.label, r.name));
        }
    }
    for d in b.definitions().iter().take(1) {
        differentiators.push(sentence(&format!("{name} {}", clip_words(d, 24))));
    }
    let mut diff_fallback: Vec<String> =
        themes.iter().map(|t| format!("A sharper focus on {t} than anyone else in {}", b.category)).collect();
    diff_fallback.push(format!("Built for {audience} rather than for everyone"));
    diff_fallback.push(format!("Says plainly what it does, where the category hides behind {}", and_list(&cliches(b))));

    // Proof points: the material's own evidence, or what is still to gather.
    let mut proof_points: Vec<String> = b
        .proof
        .iter()
        .take(3)
        .map(|p| match rng.below(2) {
            0 => format!("{} (from {} own material)", quote(&clip_words(p, 26)), possessive(name)),
            _ => quote(&clip_words(p, 26)),
        })
        .collect();
    if proof_points.is_empty() {
        let t = themes.first().cloned().unwrap_or_else(|| b.category.clone());
        proof_points.push(format!("Still to gather: one customer figure that shows {t} in numbers"));
        proof_points
            .push(format!("Still to gather: a named {} who will say it in their own words", singular(&audience)));
    }

    Positioning {
        statement,
        value_props: fit(value_props, 2, 5, vp_fallback, ITEM),
        differentiators: fit(differentiators, 2, 5, diff_fallback, ITEM),
        proof_points: fit(proof_points, 1, 4, vec![format!("Proof for {name} is still to be collected")], ITEM),
    }
}

/// Whether the main reader is a consumer rather than someone at work.
fn consumer(b: &Brief) -> bool {
    b.audiences.first().is_some_and(|a| matches!(a.kind, Kind::Consumer)) || b.sector == Sector::Consumer
}

fn singular(label: &str) -> String {
    let l = label.trim();
    // "people who run before work" → "person who runs before work".
    if let Some((group, clause)) = l.split_once(" who ") {
        let (verb, rest) = clause.split_once(' ').unwrap_or((clause, ""));
        let one = if group == "people" { "person".to_owned() } else { singular(group) };
        let verb = super::analysis::third_person(verb);
        return if rest.is_empty() { format!("{one} who {verb}") } else { format!("{one} who {verb} {rest}") };
    }
    if let Some(stem) = l.strip_suffix("ies") {
        return format!("{stem}y");
    }
    l.strip_suffix('s').filter(|s| !s.ends_with('s')).unwrap_or(l).to_owned()
}

fn cliches(b: &Brief) -> Vec<String> {
    lexicon::profile(b.sector).cliches.iter().map(|c| quote(c)).collect()
}

pub fn positioning(b: &Brief, rng: &mut Rng) -> Value {
    let p = compose_positioning(b, rng);
    json!({
        "positioning": p.statement.join(" "),
        "value_props": p.value_props,
        "differentiators": p.differentiators,
        "proof_points": p.proof_points,
    })
}

pub fn tone(b: &Brief, rng: &mut Rng) -> Value {
    let name = &b.name;
    let audience = b.audience();
    let profile = lexicon::profile(b.sector);
    let themes = b.themes(6);
    let with_text = rivals_with_text(b);

    // Voice: the sector's register, nudged by how the company already writes.
    let mut voice: Vec<String> = profile.voice.iter().map(|v| (*v).to_owned()).collect();
    let start = rng.below(2);
    voice.rotate_left(start);
    voice.truncate(3);
    let words_per_sentence = if b.own.sentences.is_empty() {
        0
    } else {
        b.own.sentences.iter().map(|s| s.split_whitespace().count()).sum::<usize>() / b.own.sentences.len()
    };
    if !b.proof.is_empty() {
        voice.push("concrete".to_owned());
    }
    if words_per_sentence > 0 && words_per_sentence <= 14 {
        voice.push("brisk".to_owned());
    }
    let you =
        b.own.sentences.iter().filter(|s| tokenize(s).iter().any(|t| t.lower == "you" || t.lower == "your")).count();
    if you * 3 >= b.own.sentences.len() && you > 0 {
        voice.push("direct".to_owned());
    }
    let voice = fit(voice, 3, 5, vec!["clear".into(), "specific".into(), "human".into()], 60);

    let rival_words: Vec<String> = with_text.iter().flat_map(|r| superlatives(r)).take(4).collect();
    let benefit_line = benefit(b, rng);

    // The tone paragraph.
    let mut tone = Vec::new();
    tone.push(match rng.below(3) {
        0 => format!(
            "{name} sounds {}, like {} talking to {audience}, not a vendor pitching them.",
            and_list(&voice[..3.min(voice.len())]),
            profile.peer
        ),
        1 => format!(
            "The voice of {name} is {}: {} explaining something useful to {audience}.",
            and_list(&voice[..3.min(voice.len())]),
            profile.peer
        ),
        _ => format!(
            "Think of {} with something useful to tell {audience}: that is how {name} sounds, {}.",
            profile.peer,
            and_list(&voice[..3.min(voice.len())])
        ),
    });
    tone.push(match (&benefit_line, rng.below(2)) {
        (Some(d), 0) => format!(
            "It leads with what changes for the reader (it {}) and backs each promise with something they can check.",
            clip_words(d, 14)
        ),
        (Some(d), _) => {
            format!("Every piece starts from the outcome: {name} {}. Proof follows, never hype.", clip_words(d, 14))
        }
        (None, _) => {
            format!("It starts from the reader's problem and the outcome, then shows how {} gets them there.", name)
        }
    });
    if !themes.is_empty() {
        tone.push(format!(
            "It says {} the way the company's own material does, and explains a term once rather than leaning on jargon.",
            and_list(&themes.iter().take(2).cloned().collect::<Vec<_>>())
        ));
    }
    if !rival_words.is_empty() {
        tone.push(format!(
            "It leaves the category's superlatives ({}) to the competitors.",
            and_list(&rival_words.iter().take(3).map(|w| quote(w)).collect::<Vec<_>>())
        ));
    } else {
        tone.push(format!("It avoids the category's stock phrases, such as {}.", or_list(&cliches(b))));
    }
    let tone = tone.join(" ");

    // Do's and don'ts.
    let mut dos = Vec::new();
    if let Some(d) = &benefit_line {
        dos.push(format!("Lead with the outcome: {}", base_form(&clip_words(d, 16))));
    }
    if let Some(p) = b.proof.first() {
        dos.push(format!("Put a figure next to every claim, as in {}", quote(&clip_words(p, 14))));
    } else {
        dos.push("Put a number or a named example next to every claim".to_owned());
    }
    if themes.len() >= 2 {
        dos.push(format!(
            "Use the company's own terms: {}",
            and_list(&themes.iter().take(3).cloned().collect::<Vec<_>>())
        ));
    }
    dos.push(if consumer(b) {
        format!("Write to {audience} like a friend who happens to know the subject")
    } else {
        format!("Write to {audience} as peers who know their job")
    });
    if let Some(pain) = b.pains.first() {
        dos.push(format!("Name the pain as they would: {}", quote(&clip_words(pain, 14))));
    }
    let mut donts = Vec::new();
    for r in &with_text {
        if let Some(w) = superlatives(r).first() {
            donts.push(format!("Don't echo {} {} language", possessive(&r.name), quote(w)));
        }
    }
    let mut buzz: Vec<String> = lexicon::buzzwords().into_iter().map(str::to_owned).collect();
    rng.shuffle(&mut buzz);
    donts.push(format!("Don't use filler like {}", or_list(&buzz[..3].iter().map(|w| quote(w)).collect::<Vec<_>>())));
    donts.push(format!("Don't promise what the material cannot prove; {} has to be able to back every line", name));
    donts.push(format!("Don't talk down to {audience} or explain what they already know"));
    if !b.rivals.is_empty() && rng.chance(60) {
        donts.push(format!("Don't name {} unless comparing facts", or_list(&b.rival_names())));
    }

    // Vocabulary.
    let mut use_words: Vec<String> = themes.clone();
    use_words.push(audience.clone());
    let mut avoid: Vec<String> = rival_words.clone();
    avoid.extend(buzz.iter().take(3).cloned());
    avoid.extend(lexicon::profile(b.sector).cliches.iter().take(2).map(|c| (*c).to_owned()));

    // Sample lines in the voice.
    let mut lines = Vec::new();
    if let Some(d) = &benefit_line {
        lines.push(sentence(&cap(&base_form(&clip_words(d, 14)))));
    }
    if let Some(t) = themes.first() {
        lines.push(match rng.below(3) {
            0 => format!("{}, the way {audience} always wanted it.", cap(t)),
            1 => format!("{name}. {} without the busywork.", cap(t)),
            _ => format!("Less chasing. More {t}."),
        });
    }
    if let Some(p) = b.proof.first() {
        lines.push(sentence(&clip_words(p, 16)));
    }
    if let Some(f) = b.features().first() {
        lines.push(sentence(&format!("{} {}", possessive(name), clip_words(f, 22))));
    }
    if let Some(t) = themes.get(1) {
        lines.push(format!("{name}: {t}, for {audience}."));
    }
    let line_fallback = vec![
        format!("{name}: {} that works the way {audience} do.", cap(&b.category)),
        format!("Built for {audience}. Honest about what it does."),
    ];

    json!({
        "tone": tone,
        "voice_attributes": voice,
        "do": fit(dos, 2, 6, vec![format!("Keep sentences short and concrete"), format!("End with one clear next step")], ITEM),
        "dont": fit(donts, 2, 6, vec!["Don't stack adjectives".to_owned()], ITEM),
        "vocabulary": {
            "use": fit(use_words, 2, 10, vec![b.category.clone(), b.name.clone()], 80),
            "avoid": fit(avoid, 2, 10, vec!["world-class".into(), "revolutionary".into()], 80),
        },
        "sample_lines": fit(lines, 2, 5, line_fallback, ITEM),
    })
}

/// Where a kind of reader works, for a persona's description.
fn workplace(kind: Kind) -> &'static str {
    match kind {
        Kind::Finance => "a growing company with a lean finance team",
        Kind::Executive => "a company of twenty to two hundred people",
        Kind::Marketing => "a team that has to show pipeline every month",
        Kind::Technical => "a product team that ships every week",
        Kind::Creative => "a small studio that is mostly them",
        Kind::SmallBusiness => "a business they run themselves",
        Kind::Consumer => "home",
        Kind::Health => "a busy practice",
        Kind::Education => "a school with a tight budget",
        Kind::Operations => "a company that has outgrown its spreadsheets",
        Kind::Sales => "a team with a quarterly number",
        Kind::People => "a company that hires every month",
    }
}

/// A reader's everyday problems when the material names none; personas of one kind take turns.
fn default_pains(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Finance => &[
            "spends the first week of every month chasing numbers",
            "rebuilds the same reconciliation by hand every period",
            "answers the same questions from the board with numbers that are already stale",
        ],
        Kind::Executive => &[
            "is pulled in every direction and buys only what pays back quickly",
            "hears about problems from customers before the dashboards show them",
        ],
        Kind::Marketing => &[
            "is asked for more pipeline with the same budget",
            "cannot tell which campaigns actually brought customers",
        ],
        Kind::Technical => &["loses hours to glue work nobody sees", "inherits tools nobody documented"],
        Kind::Creative => &["juggles client work and their own brand", "spends more time on admin than on the craft"],
        Kind::SmallBusiness => &["does the admin at night, after the real work", "pays for tools that do half the job"],
        Kind::Consumer => &[
            "has little time and less patience for products that don't deliver",
            "has been let down by products that looked better online than in use",
            "finds it hard to tell real quality from good marketing",
        ],
        Kind::Health => &["has more patients than hours", "fights software that adds clicks to every visit"],
        Kind::Education => &["spends evenings preparing material", "has thirty learners and thirty different paces"],
        Kind::Operations => &[
            "keeps processes running on spreadsheets and goodwill",
            "finds out about a broken handover when a customer complains",
        ],
        Kind::Sales => &["chases a number every quarter", "loses deals to slow follow-up"],
        Kind::People => &[
            "handles hiring, onboarding and everyone's questions at once",
            "chases managers for feedback that never comes",
        ],
    }
}

/// What a kind of reader is after; personas of one kind take turns.
fn default_goals(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Finance => &[
            "close the books faster without adding headcount",
            "hand the auditors a clean file the first time",
            "give the business numbers it can act on",
        ],
        Kind::Executive => &["see the business clearly enough to decide quickly", "grow without adding overhead"],
        Kind::Marketing => &["show which work actually brings customers", "do more with the budget already approved"],
        Kind::Technical => &["ship without babysitting tools", "keep the stack simple enough to reason about"],
        Kind::Creative => &["spend more time on the work itself", "look as good as the work they do"],
        Kind::SmallBusiness => &["get evenings back", "look bigger than they are"],
        Kind::Consumer => {
            &["buy once and buy well", "get something that simply works", "find a brand worth recommending"]
        }
        Kind::Health => &["spend more time with patients", "keep records right without extra clicks"],
        Kind::Education => &["see every learner make progress", "prepare less and teach more"],
        Kind::Operations => {
            &["replace manual steps with something dependable", "know about problems before customers do"]
        }
        Kind::Sales => &["spend more time selling", "follow up on every lead the same day"],
        Kind::People => &["hire well without drowning in admin", "give new joiners a good first week"],
    }
}

fn nth(items: &'static [&'static str], i: usize) -> &'static str {
    items.get(i % items.len().max(1)).copied().unwrap_or_default()
}

pub fn personas(b: &Brief, rng: &mut Rng) -> Value {
    let name = &b.name;
    let themes = b.themes(4);
    let named = b.audiences.iter().filter(|a| a.own > 0).count();
    let n = if named >= 4 {
        4
    } else if b.audiences.len() >= 3 && (named >= 3 || rng.chance(50)) {
        3
    } else {
        2
    };
    let mut used_names: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for (i, a) in b.audiences.iter().take(n).enumerate() {
        // Earlier personas of the same kind, so each gets its own pain and goal.
        let same_kind = b.audiences.iter().take(i).filter(|o| o.kind == a.kind).count();
        let first = persona_name(&a.role, &used_names, rng);
        used_names.push(first.clone());
        let role_lower = uncap(&a.role);
        let theme = themes.get(i % themes.len().max(1)).cloned().unwrap_or_else(|| b.category.clone());
        let pain = b.pains.get(i).map(|p| clip_words(p, 18));

        let mut description = vec![match (a.kind, rng.below(2)) {
            (Kind::Consumer, 0) => format!(
                "{first} is {} who shops carefully and trusts other customers more than ads.",
                with_article(&role_lower)
            ),
            (Kind::SmallBusiness, _) => {
                format!("{first} is {} who does sales, admin and support in the same day.", with_article(&role_lower))
            }
            (Kind::Consumer, _) => {
                format!("{first}, {}, reads the label before buying anything.", with_article(&role_lower))
            }
            (_, 0) => format!("{first} is {} at {}.", with_article(&role_lower), workplace(a.kind)),
            _ => format!("{first} works as {} at {}.", with_article(&role_lower), workplace(a.kind)),
        }];
        description.push(match (&pain, rng.below(2)) {
            (Some(p), 0) => {
                format!("Day to day, {first} lives with what {} material describes: {}.", possessive(name), quote(p))
            }
            (Some(p), _) => format!("The problem {first} would name first: {}.", quote(p)),
            (None, _) => format!("{first} {}.", nth(default_pains(a.kind), same_kind)),
        });
        description.push(match rng.below(3) {
            0 => format!("What wins {first} over is {}, shown rather than promised.", noun_phrase(&theme)),
            1 => format!(
                "{first} would pick {name} for {}, if someone proves it on a real example.",
                noun_phrase(&theme)
            ),
            _ => format!("{first} listens when {name} talks about {}.", noun_phrase(&theme)),
        });

        let mut goals = vec![
            cap(nth(default_goals(a.kind), same_kind)),
            match a.kind {
                Kind::Consumer => format!("{} they can trust", cap(&noun_phrase(&theme))),
                _ => format!("{} without extra work", cap(&theme)),
            },
        ];
        if let Some(g) = b.company.goals.get(i).or(b.company.goals.first())
            && shares_word(g, &a.label)
        {
            goals.push(cap(&goal_action(g)));
        }
        let mut pains = vec![cap(nth(default_pains(a.kind), same_kind))];
        if let Some(p) = &pain {
            pains.insert(0, sentence(p));
        }
        if let Some(c) = b.crowded.first() {
            pains.push(format!("Too many tools that all promise {c}"));
        }
        let mut channels: Vec<String> = lexicon::channels(a.kind).iter().map(|c| (*c).to_owned()).collect();
        rng.shuffle(&mut channels);
        channels.truncate(3);
        let mut objections: Vec<String> = lexicon::objections(a.kind).iter().take(2).map(|o| cap(o)).collect();
        if let Some(r) = b.rivals.get(i % b.rivals.len().max(1)) {
            objections.push(match a.kind {
                Kind::Consumer => format!("Already buys from {} and needs a reason to switch", r.name),
                _ => format!("Already uses {} and switching has to pay for itself", r.name),
            });
        }

        out.push(json!({
            "name": format!("{first}, the {role_lower}"),
            "description": description.join(" "),
            "attributes": {
                "role": a.role,
                "goals": fit(goals, 1, 4, vec![], ITEM),
                "pains": fit(pains, 1, 4, vec![], ITEM),
                "channels": channels,
                "objections": fit(objections, 1, 4, vec![], ITEM),
            }
        }));
    }
    json!({ "personas": out })
}

/// A first name that echoes the role's initial and is not taken yet.
fn persona_name(role: &str, taken: &[String], rng: &mut Rng) -> String {
    let initial = role.chars().next().unwrap_or('A').to_ascii_uppercase();
    let mut options: Vec<&str> = lexicon::FIRST_NAMES.iter().copied().filter(|n| n.starts_with(initial)).collect();
    if options.is_empty() || options.iter().all(|o| taken.iter().any(|t| t == o)) {
        options = lexicon::FIRST_NAMES.to_vec();
    }
    let free: Vec<&str> = options.into_iter().filter(|o| !taken.iter().any(|t| t == o)).collect();
    (*rng.pick(&free)).to_owned()
}

pub fn refine(b: &Brief, input: &Value, rng: &mut Rng) -> Value {
    let name = &b.name;
    let audience = b.audience();
    let core = input.get("brand_core").cloned().unwrap_or(Value::Null);
    let current = core.get("positioning").and_then(Value::as_str).unwrap_or_default();
    let guidelines = core.get("guidelines").cloned().unwrap_or(Value::Null);

    // The insights, read as data like any other untrusted text.
    let insights: Vec<String> = insight_texts(input.get("insights"))
        .into_iter()
        .flat_map(|t| sentences(&t))
        .filter(|s| !is_instruction(s))
        .collect();
    let mut names = vec![b.company.name.clone()];
    names.extend(b.rivals.iter().map(|r| r.name.clone()));
    let read = TextProfile::read(&insights, &names);
    let current_lower = current.to_lowercase();
    let focus = read
        .phrases
        .iter()
        .filter(|p| !super::analysis::is_audience_like(p))
        .find(|p| p.words.iter().all(|w| b.own.words.contains(w) || current_lower.contains(w.as_str())))
        .or_else(|| read.phrases.iter().find(|p| !super::analysis::is_audience_like(p)))
        .map(|p| p.text.clone())
        .or_else(|| b.themes(1).first().cloned())
        .unwrap_or_else(|| b.category.clone());

    let fresh = compose_positioning(b, rng);
    let kept: Vec<String> = sentences(current).into_iter().filter(|s| !is_instruction(s)).collect();
    let mut statement = Vec::new();
    statement.push(kept.first().cloned().unwrap_or_else(|| fresh.statement[0].clone()));
    statement.push(match rng.below(3) {
        0 => format!("It now leads with {}, the part of the promise {audience} respond to most.", noun_phrase(&focus)),
        1 => format!("The emphasis moves to {}: that is what {audience} act on.", noun_phrase(&focus)),
        _ => format!("{name} puts {} first, because that is what moves {audience}.", noun_phrase(&focus)),
    });
    if let Some(second) = kept.get(1) {
        statement.push(second.clone());
    } else if let Some(s) = fresh.statement.get(1) {
        statement.push(s.clone());
    }
    statement.truncate(4);

    let existing = |key: &str| texts_of(guidelines.get(key));
    let mut value_props = vec![match rng.below(2) {
        0 => format!("{} \u{2014} what {audience} respond to most", cap(&focus)),
        _ => format!("{} first, backed by the latest results", cap(&focus)),
    }];
    let previous = existing("value_props");
    value_props.extend(if previous.is_empty() { fresh.value_props.clone() } else { previous });
    let previous = existing("differentiators");
    let differentiators = if previous.is_empty() { fresh.differentiators.clone() } else { previous };
    let mut proof_points: Vec<String> = insights
        .iter()
        .filter(|i| i.chars().any(|c| c.is_ascii_digit()))
        .take(2)
        .map(|i| format!("{} (measured since the last approval)", quote(&clip_words(i, 24))))
        .collect();
    let previous = existing("proof_points");
    proof_points.extend(if previous.is_empty() { fresh.proof_points.clone() } else { previous });

    let rationale = if insights.is_empty() {
        format!(
            "No usable insights came with this request, so the positioning keeps its approved core and only \
             sharpens the emphasis on {focus}."
        )
    } else {
        let quoted: Vec<String> = insights.iter().take(2).map(|i| quote(&clip_words(i, 20))).collect();
        let n = insights.len();
        let lead = match (n, rng.below(2)) {
            (1, _) => format!("One insight stands out: {}.", and_list(&quoted)),
            (_, 0) => format!("{} insights point the same way: {}.", cap(&count_word(n)), and_list(&quoted)),
            _ => format!("The results since approval say {}.", and_list(&quoted)),
        };
        format!(
            "{lead} {} is what {audience} respond to, so the revision moves it to the front and keeps the rest of \
             the approved positioning{}. Nothing else changes until the next results confirm the shift.",
            cap(&focus),
            if kept.is_empty() { String::new() } else { ", starting with its first sentence".to_owned() }
        )
    };

    json!({
        "positioning": statement.join(" "),
        "value_props": fit(value_props, 2, 5, fresh.value_props.clone(), ITEM),
        "differentiators": fit(differentiators, 2, 5, fresh.differentiators.clone(), ITEM),
        "proof_points": fit(proof_points, 1, 4, fresh.proof_points.clone(), ITEM),
        "rationale": rationale,
    })
}

/// Insights as text: strings, objects with a text field, or objects of named figures
/// (`{"metric": "ctr", "segment": "finance leads", "change": "+38%"}`).
fn insight_texts(v: Option<&Value>) -> Vec<String> {
    let Some(Value::Array(items)) = v else { return texts_of(v) };
    items
        .iter()
        .filter_map(|i| {
            super::analysis::text_of(i).or_else(|| {
                let o = i.as_object()?;
                let field = |k: &str| match o.get(k) {
                    Some(Value::String(s)) => Some(s.replace('_', " ")),
                    Some(Value::Number(n)) => Some(n.to_string()),
                    _ => None,
                };
                if let Some(metric) = field("metric") {
                    let change = ["change", "delta", "value", "lift"].iter().find_map(|k| field(k)).unwrap_or_default();
                    let mut text = format!("{metric} {change}").trim().to_owned();
                    if let Some(segment) = ["segment", "audience", "channel", "page"].iter().find_map(|k| field(k)) {
                        text.push_str(" among ");
                        text.push_str(&segment);
                    }
                    return Some(cap(&text));
                }
                let parts: Vec<String> = o
                    .iter()
                    .filter_map(|(k, v)| match v {
                        Value::String(s) => Some(format!("{} {s}", k.replace('_', " "))),
                        Value::Number(n) => Some(format!("{} {n}", k.replace('_', " "))),
                        _ => None,
                    })
                    .collect();
                (!parts.is_empty()).then(|| parts.join(", "))
            })
        })
        .collect()
}
