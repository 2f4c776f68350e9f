//! The offline writer's word knowledge: stopwords, verbs that cannot end a noun phrase, markers of
//! pains, proof, claims and injected instructions, the audiences it recognises, and a profile per
//! broad sector (voice, channels, objections, words to avoid).

use std::collections::HashSet;
use std::sync::LazyLock;

/// A whitespace-separated word list as a set.
fn set(text: &'static str) -> HashSet<&'static str> {
    text.split_whitespace().collect()
}

static STOPWORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| set(STOPWORDS_TEXT));
static VERBISH: LazyLock<HashSet<&'static str>> = LazyLock::new(|| set(VERBISH_TEXT));
static PAIN_MARKERS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| set(PAIN_MARKERS_TEXT));
static PROOF_MARKERS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| set(PROOF_MARKERS_TEXT));
static CLAIM_MARKERS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| set(CLAIM_MARKERS_TEXT));

/// A word that carries no topic of its own ("the", "really", "month").
pub fn is_stopword(w: &str) -> bool {
    STOPWORDS.contains(w)
}

/// A verb form that cannot be part of a noun phrase ("matches", "convert").
pub fn is_verbish(w: &str) -> bool {
    VERBISH.contains(w)
}

/// A word that makes a sentence read as a reader's pain ("spreadsheets", "chasing").
pub fn is_pain_marker(w: &str) -> bool {
    PAIN_MARKERS.contains(w)
}

/// A word that makes a sentence read as evidence ("customers", "saved").
pub fn is_proof_marker(w: &str) -> bool {
    PROOF_MARKERS.contains(w)
}

/// A word that makes a competitor's sentence read as its claim ("fastest", "#1").
pub fn is_claim_marker(w: &str) -> bool {
    CLAIM_MARKERS.contains(w)
}

/// A word that describes rather than names, so a noun phrase cannot end on it: superlatives and
/// comparatives ("fastest", "lighter"), hyphenated participles ("carbon-plated", "award-winning"),
/// adjective endings ("-ful", "-ous", "-less", "-able") and common adjectives ("muddy", "elite").
pub fn is_adjective_like(w: &str) -> bool {
    let len = w.chars().count();
    ADJECTIVES.contains(w)
        || (is_claim_marker(w) && !["award", "number", "world", "guarantee", "leader"].contains(&w))
        || is_superlative(w)
        || (w.contains('-') && (w.ends_with("ed") || w.ends_with("ing") || w.ends_with("free")))
        || (len > 5 && (w.ends_with("ful") || w.ends_with("ous") || w.ends_with("less")))
        || (len > 6 && (w.ends_with("able") || w.ends_with("ible")) && !NOUNS_LIKE_ADJECTIVES.contains(w))
}

/// A superlative ("fastest", "easiest", "best", "most"): it takes "the", never "a".
pub fn is_superlative(w: &str) -> bool {
    ["best", "most", "least", "worst"].contains(&w)
        || (w.chars().count() >= 6 && w.ends_with("est") && !NOUNS_LIKE_ADJECTIVES.contains(w))
}

static ADJECTIVES: LazyLock<HashSet<&'static str>> = LazyLock::new(|| set(ADJECTIVES_TEXT));
static NOUNS_LIKE_ADJECTIVES: LazyLock<HashSet<&'static str>> = LazyLock::new(|| set(NOUNS_LIKE_ADJECTIVES_TEXT));

/// Common adjectives a phrase may start with but not end on.
const ADJECTIVES_TEXT: &str = "\
     light lightweight fast quick rapid slow new old clean muddy rugged elite small big large tiny \
     huge simple easy hard cheap smart modern local global durable reliable secure affordable \
     premium organic natural fresh healthy strong soft bold real true full whole better faster \
     cheaper bigger smaller lighter stronger safer easier quicker higher lower greater seamless \
     robust innovative intuitive efficient effective accurate precise flexible scalable compact \
     sturdy tough waterproof breathable grippy technical steep rocky wet dry early late daily \
     weekly ready happy busy growing leading independent professional personal digital visual \
     ambitious beautiful responsive unique special serious casual active honest modest earnest";

/// Words with adjective endings that are nouns ("forest", "interest", "vegetable").
const NOUNS_LIKE_ADJECTIVES_TEXT: &str = "\
     forest forests interest interests request requests harvest harvests contest contests guest \
     guests chest quest test tests west crest protest conquest digest manifest arrest priest \
     inquest honest modest earnest vegetable vegetables timetable timetables turntable variable \
     variables deliverable deliverables receivable receivables payable payables constable";

/// The claim markers that contain punctuation and must be searched as substrings ("#1",
/// "all-in-one").
pub fn punctuated_claim_markers() -> impl Iterator<Item = &'static str> {
    CLAIM_MARKERS.iter().copied().filter(|m| m.contains(['#', '-', '.']))
}

/// Superlatives and filler to keep out of the brand's own voice, in a fixed order.
pub fn buzzwords() -> Vec<&'static str> {
    BUZZWORDS_TEXT.split_whitespace().collect()
}

/// Words that carry no topic of their own.
const STOPWORDS_TEXT: &str = "\
     previous proposal proposals reviewer reviewers \
     january february march april may june july august september october november december \
     monday tuesday wednesday thursday friday saturday sunday a about above across after again against all almost along already also although always am among \
     an and another any anyone anything are around as at away back be because been before being below \
     best better between both but by can cannot could day days did do does doing done down during \
     each easy either else enough etc even ever every everyone everything few first for from further \
     get gets getting give go goes going good great had has have having he her here hers him his how \
     however i if in into is it its itself just keep kind know last least less let like little lot \
     lots made make makes many may me might more most much must my need needs never new next no nor \
     not now of off often on once one only or other others our ours out over own part per really \
     right same see seen she should since so some something soon still such sure take than that the \
     their theirs them then there these they thing things this those though through thus time times \
     to today together too toward towards under until up upon us use used uses using very via want \
     wants was way ways we week weeks well were what whatever when where whether which while who \
     whole whom whose why will with within without would year years yes yet you your yours yourself \
     able ago ah ok okay vs we're we've you're you'll it's don't can't won't isn't aren't there's \
     that's let's i'm they're help helps helping lets allow allows enable enables ensure simply \
     everyday anywhere anytime inc ltd llc gmbh month months monthly quarter quarters hour minute \
     minutes morning tonight weekly daily yearly annual finally actually truly instead stuff bit \
     plenty extra tell told";

/// Verbs (and verb forms) that may sit inside a phrase but neither start nor end one.
const VERBISH_TEXT: &str = "\
     shed sheds survive survives dream dreams train trains adds automate automates bring brings build builds buy buys catches changes checks choose chooses \
     closes come comes connect connects create creates cuts deliver delivers find finds flags grow \
     grows hire hires hiring increases loves manage manages matches offers pays provide provides \
     reduce reduces runs save saves say says send sends ships signs spends starts stops supports \
     syncs tracks turns wins works tries lose loses gives takes keeps knows goes means mean feel \
     feels think thinks become becomes calls ask asks shows tell tells leaves puts sets plugs replace \
     replaces imports exports handles spots trusts reconcile reconciles calm calms grown made built \
     convert converts perform performs outperform outperforms drive drives clicks opens respond \
     responds prefer prefers engage engages bounces sell sells reads watches visits drops rise rises \
     falls doubles triples helps wants needs gets lets makes uses brought got went came took gave \
     kept felt told thought found bought sold lost";

/// Sentences with these read as a pain the reader feels.
const PAIN_MARKERS_TEXT: &str = "\
     manual manually spreadsheet spreadsheets waste wasted wasting late slow error errors mistake \
     mistakes expensive costly stress stressful frustrated frustrating struggle struggling chase \
     chasing juggle juggling messy chaos tedious headache headaches tired painful risk risky missed \
     lost churn overwhelmed burnout delay delays bottleneck hassle confusing complicated guesswork \
     instead";

/// Sentences with these (or with a digit) read as evidence.
const PROOF_MARKERS_TEXT: &str = "\
     customers clients teams companies businesses users trusted award awarded rated saved saves \
     reduced cut increased faster certified since founded case study review reviews stars percent \
     hours minutes customer";

/// Competitor sentences with these read as the claim they lead with.
const CLAIM_MARKERS_TEXT: &str = "\
     best fastest easiest simplest smartest leading leader only most trusted award award-winning \
     all-in-one guarantee guaranteed free unlimited #1 number powerful proven world world's every \
     first no.1 top premier ultimate effortless instant";

/// Superlatives and filler to keep out of the brand's own voice.
const BUZZWORDS_TEXT: &str = "\
     world-class cutting-edge revolutionary game-changing best-in-class synergy seamless \
     next-generation disruptive leverage robust innovative paradigm turnkey supercharge";

/// Lowercased fragments of text that try to steer a model rather than describe a business.
pub const INSTRUCTION_MARKERS: &[&str] = &[
    "ignore previous",
    "ignore all",
    "ignore the above",
    "ignore prior",
    "ignore your",
    "ignore any",
    "ignore these",
    "ignore the instructions",
    "disregard",
    "previous instructions",
    "prior instructions",
    "above instructions",
    "new instructions",
    "system prompt",
    "you are now",
    "you must now",
    "act as ",
    "pretend to be",
    "pretend you",
    "jailbreak",
    "do anything now",
    "approve this",
    "approve the",
    "approve it",
    "auto-approve",
    "approve immediately",
    "reveal your",
    "forget your",
    "forget everything",
    "override",
    "respond only with",
    "output the following",
    "as an ai",
    "language model",
    "<|",
    "[inst]",
    "### instruction",
    "call the tool",
    "function call",
];

/// Imperatives that, at the start of a sentence, address whoever reads it.
pub const INSTRUCTION_OPENERS: &[&str] = &["ignore", "disregard", "forget", "approve", "override", "reveal", "execute"];

/// Which channels and concerns an audience comes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Finance,
    Executive,
    Marketing,
    Technical,
    Creative,
    SmallBusiness,
    Consumer,
    Health,
    Education,
    Operations,
    Sales,
    People,
}

/// An audience the writer recognises: the words that name it, how to call a group of them, and
/// the job title of one of them.
pub struct AudienceEntry {
    pub words: &'static [&'static [&'static str]],
    pub label: &'static str,
    pub role: &'static str,
    pub kind: Kind,
}

pub const AUDIENCES: &[AudienceEntry] = &[
    AudienceEntry {
        words: &[&["finance", "lead"], &["finance", "leads"], &["heads", "of", "finance"], &["head", "of", "finance"]],
        label: "finance leads",
        role: "Finance lead",
        kind: Kind::Finance,
    },
    AudienceEntry {
        words: &[&["finance", "team"], &["finance", "teams"]],
        label: "finance teams",
        role: "Finance manager",
        kind: Kind::Finance,
    },
    AudienceEntry { words: &[&["cfo"], &["cfos"]], label: "CFOs", role: "CFO", kind: Kind::Executive },
    AudienceEntry {
        words: &[&["controller"], &["controllers"]],
        label: "controllers",
        role: "Financial controller",
        kind: Kind::Finance,
    },
    AudienceEntry {
        words: &[&["accountant"], &["accountants"], &["accounting", "firms"]],
        label: "accountants",
        role: "Accountant",
        kind: Kind::Finance,
    },
    AudienceEntry {
        words: &[&["bookkeeper"], &["bookkeepers"]],
        label: "bookkeepers",
        role: "Bookkeeper",
        kind: Kind::Finance,
    },
    AudienceEntry {
        words: &[&["marketing", "team"], &["marketing", "teams"], &["marketer"], &["marketers"], &["cmo"], &["cmos"]],
        label: "marketers",
        role: "Marketing manager",
        kind: Kind::Marketing,
    },
    AudienceEntry {
        words: &[&["sales", "team"], &["sales", "teams"], &["sales", "reps"], &["account", "executives"]],
        label: "sales teams",
        role: "Sales lead",
        kind: Kind::Sales,
    },
    AudienceEntry {
        words: &[&["small", "business"], &["small", "businesses"], &["smb"], &["smbs"], &["business", "owners"]],
        label: "small-business owners",
        role: "Small-business owner",
        kind: Kind::SmallBusiness,
    },
    AudienceEntry {
        words: &[&["founder"], &["founders"], &["co-founder"], &["co-founders"]],
        label: "founders",
        role: "Founder",
        kind: Kind::Executive,
    },
    AudienceEntry { words: &[&["ceo"], &["ceos"]], label: "CEOs", role: "CEO", kind: Kind::Executive },
    AudienceEntry {
        words: &[&["startup"], &["startups"], &["start-ups"]],
        label: "startup teams",
        role: "Startup founder",
        kind: Kind::Executive,
    },
    AudienceEntry {
        words: &[&["freelancer"], &["freelancers"], &["solopreneurs"], &["contractors"]],
        label: "freelancers",
        role: "Freelancer",
        kind: Kind::SmallBusiness,
    },
    AudienceEntry {
        words: &[&["developer"], &["developers"], &["engineer"], &["engineers"], &["engineering", "teams"]],
        label: "developers",
        role: "Engineering lead",
        kind: Kind::Technical,
    },
    AudienceEntry {
        words: &[&["designer"], &["designers"]],
        label: "designers",
        role: "Design lead",
        kind: Kind::Creative,
    },
    AudienceEntry {
        words: &[&["creator"], &["creators"], &["influencers"]],
        label: "creators",
        role: "Content creator",
        kind: Kind::Creative,
    },
    AudienceEntry {
        words: &[&["agency"], &["agencies"]],
        label: "agencies",
        role: "Agency owner",
        kind: Kind::Marketing,
    },
    AudienceEntry {
        words: &[&["operations", "team"], &["operations", "teams"], &["ops", "teams"], &["operations", "managers"]],
        label: "operations teams",
        role: "Operations manager",
        kind: Kind::Operations,
    },
    AudienceEntry {
        words: &[&["hr"], &["recruiter"], &["recruiters"], &["people", "teams"]],
        label: "HR teams",
        role: "People lead",
        kind: Kind::People,
    },
    AudienceEntry {
        words: &[&["retailer"], &["retailers"], &["shop", "owners"], &["store", "owners"], &["merchants"]],
        label: "independent retailers",
        role: "Store owner",
        kind: Kind::SmallBusiness,
    },
    AudienceEntry {
        words: &[&["restaurant"], &["restaurants"], &["cafes"], &["caf\u{e9}s"]],
        label: "restaurant owners",
        role: "Restaurant owner",
        kind: Kind::SmallBusiness,
    },
    AudienceEntry {
        words: &[&["clinic"], &["clinics"], &["practices"], &["practice", "managers"]],
        label: "clinics",
        role: "Practice manager",
        kind: Kind::Health,
    },
    AudienceEntry {
        words: &[&["doctor"], &["doctors"], &["clinicians"], &["nurses"], &["physicians"], &["therapists"]],
        label: "clinicians",
        role: "Clinician",
        kind: Kind::Health,
    },
    AudienceEntry { words: &[&["patient"], &["patients"]], label: "patients", role: "Patient", kind: Kind::Consumer },
    AudienceEntry {
        words: &[&["parent"], &["parents"], &["families"]],
        label: "parents",
        role: "Parent",
        kind: Kind::Consumer,
    },
    AudienceEntry {
        words: &[&["student"], &["students"], &["learners"]],
        label: "students",
        role: "Student",
        kind: Kind::Education,
    },
    AudienceEntry {
        words: &[&["teacher"], &["teachers"], &["educators"], &["schools"]],
        label: "teachers",
        role: "Teacher",
        kind: Kind::Education,
    },
    AudienceEntry {
        words: &[&["coach"], &["coaches"], &["consultant"], &["consultants"]],
        label: "coaches and consultants",
        role: "Independent consultant",
        kind: Kind::SmallBusiness,
    },
    AudienceEntry {
        words: &[&["enterprise"], &["enterprises"]],
        label: "enterprise buyers",
        role: "Enterprise buyer",
        kind: Kind::Executive,
    },
    AudienceEntry {
        words: &[&["homeowner"], &["homeowners"]],
        label: "homeowners",
        role: "Homeowner",
        kind: Kind::Consumer,
    },
    AudienceEntry {
        words: &[&["nonprofit"], &["nonprofits"], &["charities"], &["non-profits"]],
        label: "nonprofits",
        role: "Nonprofit director",
        kind: Kind::Operations,
    },
    AudienceEntry {
        words: &[&["runners"], &["athletes"], &["cyclists"]],
        label: "athletes",
        role: "Amateur athlete",
        kind: Kind::Consumer,
    },
    AudienceEntry {
        words: &[&["travelers"], &["travellers"]],
        label: "travellers",
        role: "Frequent traveller",
        kind: Kind::Consumer,
    },
    AudienceEntry { words: &[&["shoppers"], &["consumers"]], label: "shoppers", role: "Shopper", kind: Kind::Consumer },
];

/// Where a kind of reader spends attention.
pub fn channels(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Finance => &[
            "LinkedIn",
            "finance and accounting newsletters",
            "peer groups of finance leaders",
            "webinars that count towards CPD",
            "review sites such as G2 and Capterra",
        ],
        Kind::Executive => &[
            "LinkedIn",
            "founder and operator podcasts",
            "referrals from peers",
            "industry events",
            "long-form newsletters",
        ],
        Kind::Marketing => {
            &["LinkedIn", "marketing newsletters", "Slack communities of marketers", "YouTube walkthroughs", "webinars"]
        }
        Kind::Technical => &[
            "GitHub",
            "Hacker News",
            "technical blogs and documentation",
            "developer Discord and Slack communities",
            "conference talks",
        ],
        Kind::Creative => &["Instagram", "YouTube", "TikTok", "Behance and Dribbble", "creator newsletters"],
        Kind::SmallBusiness => &[
            "Google search",
            "Facebook groups for owners",
            "YouTube how-tos",
            "local business associations",
            "word of mouth",
        ],
        Kind::Consumer => &["Instagram", "TikTok", "Google search", "review sites", "word of mouth"],
        Kind::Health => &[
            "professional associations",
            "clinical conferences",
            "LinkedIn",
            "trade journals",
            "referrals from colleagues",
        ],
        Kind::Education => &[
            "teacher communities on Facebook",
            "YouTube",
            "education conferences",
            "newsletters for educators",
            "word of mouth",
        ],
        Kind::Operations => &[
            "LinkedIn",
            "industry newsletters",
            "review sites such as G2 and Capterra",
            "peer Slack communities",
            "webinars",
        ],
        Kind::Sales => &["LinkedIn", "sales podcasts", "peer communities of revenue leaders", "review sites", "events"],
        Kind::People => &["LinkedIn", "HR newsletters", "HR associations", "webinars", "peer referrals"],
    }
}

/// What a kind of reader doubts before buying.
pub fn objections(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Finance => &[
            "needs to see that the numbers stay audit-ready",
            "worries about handing financial data to a new vendor",
            "will not switch in the middle of a quarter",
        ],
        Kind::Executive => &[
            "has been burned by tools that promised more than they delivered",
            "wants a payback period measured in months, not years",
            "does not want another tool the team ignores",
        ],
        Kind::Marketing => &[
            "has a stack already and fears another integration",
            "needs results to show in the next reporting cycle",
            "doubts the claims until a peer vouches for them",
        ],
        Kind::Technical => &[
            "wants to read the docs before talking to sales",
            "worries about lock-in and data portability",
            "needs it to fit the existing stack without glue code",
        ],
        Kind::Creative => &[
            "guards their own style and fears a generic result",
            "has little budget to spare",
            "wants to try it before committing",
        ],
        Kind::SmallBusiness => {
            &["watches every monthly fee", "has no time to learn a new system", "worries about being locked in"]
        }
        Kind::Consumer => &[
            "compares prices before deciding",
            "trusts reviews more than ads",
            "has tried alternatives that disappointed",
        ],
        Kind::Health => &[
            "needs compliance and privacy settled first",
            "has no time for anything that adds clicks",
            "wants evidence from comparable practices",
        ],
        Kind::Education => &[
            "has a tight budget and a long approval chain",
            "needs it to work for every learner, not just the keen ones",
            "worries about extra preparation time",
        ],
        Kind::Operations => &[
            "fears a messy migration",
            "needs buy-in from several teams",
            "wants to see it working at a company of similar size",
        ],
        Kind::Sales => &[
            "will not accept anything that slows the team down",
            "wants proof it moves pipeline this quarter",
            "has seen adoption fade after launch",
        ],
        Kind::People => &[
            "needs employee data to stay private",
            "has to win over managers who dislike new tools",
            "wants a rollout that does not disrupt payroll or hiring",
        ],
    }
}

/// A broad sector, read from the industry and the materials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sector {
    Finance,
    Health,
    Software,
    Consumer,
    Education,
    Services,
    Sustainability,
    Industrial,
    General,
}

pub const SECTOR_WORDS: &[(Sector, &str)] = &[
    (
        Sector::Finance,
        "finance financial fintech accounting bookkeeping payroll bank banking insurance tax taxes \
         invoicing invoices payments lending wealth audit reconciliation",
    ),
    (
        Sector::Health,
        "health healthcare medical clinic clinics wellness fitness dental pharma therapy mental \
         care patients nutrition",
    ),
    (
        Sector::Software,
        "software saas developer developers devtools api cloud ai data analytics platform app apps \
         security cybersecurity automation tech technology",
    ),
    (
        Sector::Consumer,
        "retail ecommerce e-commerce fashion beauty food beverage coffee restaurant apparel \
         consumer furniture pets travel skincare cosmetics grocery shop footwear shoes sneakers \
         clothing outdoor sports sportswear gear running cycling",
    ),
    (Sector::Education, "education edtech learning school schools training course courses tutoring"),
    (
        Sector::Services,
        "agency consulting consultancy services legal law recruiting recruitment marketing design \
         architecture coaching",
    ),
    (Sector::Sustainability, "climate energy solar sustainability sustainable renewable carbon recycling green"),
    (
        Sector::Industrial,
        "manufacturing logistics construction industrial supply freight warehouse warehousing fleet \
         shipping",
    ),
];

/// How a sector tends to sound and whom it sells to by default.
pub struct SectorProfile {
    /// Voice attributes that suit the sector, best first.
    pub voice: &'static [&'static str],
    /// Who a reader trusts in this sector ("a sharp finance colleague").
    pub peer: &'static str,
    /// What buyers in the sector take for granted.
    pub baseline: &'static [&'static str],
    /// Readers to assume when the materials name none.
    pub default_audiences: &'static [(&'static str, &'static str, Kind)],
    /// Words the sector overuses.
    pub cliches: &'static [&'static str],
}

pub fn profile(sector: Sector) -> SectorProfile {
    match sector {
        Sector::Finance => SectorProfile {
            voice: &["precise", "calm", "plain-spoken", "reassuring", "numerate"],
            peer: "a sharp finance colleague",
            baseline: &["accurate numbers", "bank-grade security", "integrations with the tools already in use"],
            default_audiences: &[
                ("finance leads", "Finance lead", Kind::Finance),
                ("small-business owners", "Small-business owner", Kind::SmallBusiness),
                ("accountants", "Accountant", Kind::Finance),
            ],
            cliches: &["financial freedom", "peace of mind", "hassle-free"],
        },
        Sector::Health => SectorProfile {
            voice: &["reassuring", "clear", "warm", "evidence-led", "respectful"],
            peer: "a trusted clinician",
            baseline: &["privacy and compliance", "evidence that it works", "fitting into busy clinical days"],
            default_audiences: &[
                ("practice managers", "Practice manager", Kind::Health),
                ("clinicians", "Clinician", Kind::Health),
                ("patients", "Patient", Kind::Consumer),
            ],
            cliches: &["holistic", "miracle", "life-changing"],
        },
        Sector::Software => SectorProfile {
            voice: &["direct", "practical", "technically fluent", "candid", "concise"],
            peer: "a senior engineer who has seen it all",
            baseline: &["reliability", "integrations and an API", "security reviews passed without drama"],
            default_audiences: &[
                ("operations teams", "Operations manager", Kind::Operations),
                ("developers", "Engineering lead", Kind::Technical),
                ("founders", "Founder", Kind::Executive),
            ],
            cliches: &["AI-powered", "next-gen", "platform for everything"],
        },
        Sector::Consumer => SectorProfile {
            voice: &["lively", "sensory", "friendly", "confident", "witty"],
            peer: "a friend with good taste",
            baseline: &["fair prices", "fast delivery", "easy returns"],
            default_audiences: &[
                ("shoppers", "Shopper", Kind::Consumer),
                ("gift buyers", "Gift buyer", Kind::Consumer),
                ("parents", "Parent", Kind::Consumer),
            ],
            cliches: &["must-have", "luxurious", "you deserve it"],
        },
        Sector::Education => SectorProfile {
            voice: &["encouraging", "patient", "clear", "curious", "warm"],
            peer: "a favourite teacher",
            baseline: &["measurable progress", "accessibility", "little extra preparation"],
            default_audiences: &[
                ("teachers", "Teacher", Kind::Education),
                ("students", "Student", Kind::Education),
                ("parents", "Parent", Kind::Consumer),
            ],
            cliches: &["unlock your potential", "fun and easy", "learning journey"],
        },
        Sector::Services => SectorProfile {
            voice: &["confident", "concise", "expert", "candid", "personable"],
            peer: "an experienced partner at the firm",
            baseline: &["senior attention", "clear scopes and fees", "references from similar clients"],
            default_audiences: &[
                ("founders", "Founder", Kind::Executive),
                ("marketers", "Marketing manager", Kind::Marketing),
                ("operations teams", "Operations manager", Kind::Operations),
            ],
            cliches: &["full-service", "one-stop shop", "passionate about results"],
        },
        Sector::Sustainability => SectorProfile {
            voice: &["hopeful", "grounded", "evidence-led", "plain-spoken", "warm"],
            peer: "an engineer who cares about the planet",
            baseline: &["verified impact numbers", "a clear payback", "certifications"],
            default_audiences: &[
                ("homeowners", "Homeowner", Kind::Consumer),
                ("operations teams", "Operations manager", Kind::Operations),
                ("founders", "Founder", Kind::Executive),
            ],
            cliches: &["eco-friendly", "save the planet", "green revolution"],
        },
        Sector::Industrial => SectorProfile {
            voice: &["solid", "straightforward", "practical", "precise", "dependable"],
            peer: "a plant manager with thirty years on the floor",
            baseline: &["uptime", "safety", "service that answers the phone"],
            default_audiences: &[
                ("operations teams", "Operations manager", Kind::Operations),
                ("founders", "Owner-operator", Kind::Executive),
                ("sales teams", "Procurement lead", Kind::Sales),
            ],
            cliches: &["industry 4.0", "end-to-end solutions", "synergies"],
        },
        Sector::General => SectorProfile {
            voice: &["clear", "confident", "human", "specific", "warm"],
            peer: "a knowledgeable friend",
            baseline: &["fair pricing", "responsive support", "something that works on day one"],
            default_audiences: &[
                ("small-business owners", "Small-business owner", Kind::SmallBusiness),
                ("operations teams", "Operations manager", Kind::Operations),
                ("founders", "Founder", Kind::Executive),
            ],
            cliches: &["solutions", "innovative", "customer-centric"],
        },
    }
}

/// First names for personas, grouped by initial so a persona's name can echo its role.
pub const FIRST_NAMES: &[&str] = &[
    "Ada", "Amara", "Ben", "Bianca", "Carla", "Chidi", "Dana", "Diego", "Elena", "Emeka", "Farah", "Felix", "Grace",
    "Gus", "Hana", "Hugo", "Ines", "Ivan", "Jade", "Jonas", "Kira", "Kofi", "Lena", "Luis", "Maya", "Malik", "Nora",
    "Nikhil", "Olivia", "Omar", "Priya", "Pablo", "Quinn", "Rosa", "Rahul", "Sofia", "Samir", "Tara", "Theo", "Uma",
    "Ugo", "Vera", "Victor", "Wen", "Wes", "Xenia", "Yara", "Yusuf", "Zoe", "Zane",
];
