//! One routing decision for a company with 10,000 contacts and 50 routes: it must cost
//! microseconds and not grow with the contact lists (lookups are hashed, not scanned).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use permanence::dialplan::{CallFacts, Caller, decide, load_dir};
use permanence::number::E164;

fn plan(contacts: usize, routes: usize) -> String {
    let mut text = String::from(
        "[company]\nid = \"big\"\nname = \"Big\"\nnumbers = [\"+33180000001\"]\n\
         [hours]\nopen = [\"mon-fri 09:00-12:30\", \"mon-fri 14:00-18:00\"]\nholidays = \"fr\"\n[contacts]\n",
    );
    let lists = 10;
    for l in 0..lists {
        text.push_str(&format!("list{l} = ["));
        for i in 0..contacts / lists {
            text.push_str(&format!("\"+3361{:07}\", ", l * 100_000 + i));
        }
        text.push_str(&format!("\"+3389{l}*\"]\n"));
    }
    for r in 0..routes - 1 {
        let when = match r % 4 {
            0 => format!("{{ caller = \"list{}\", open = true }}", r % lists),
            1 => format!(
                "{{ any = [{{ caller = \"list{}\" }}, {{ caller_matches = \"+4{r}*\" }}] }}",
                r % lists
            ),
            2 => format!(
                "{{ not = {{ open = true }}, caller = \"list{}\" }}",
                r % lists
            ),
            _ => format!(
                "{{ at = [\"sat-sun 00:00-24:00\"], caller = \"list{}\" }}",
                r % lists
            ),
        };
        text.push_str(&format!(
            "[[route]]\nname = \"r{r}\"\nwhen = {when}\nsteps = [{{ hangup = {{}} }}]\n"
        ));
    }
    text.push_str("[[route]]\nname = \"everyone else\"\nsteps = [{ hangup = {} }]\n");
    text
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let plans_dir = dir.path().join("plans");
    std::fs::create_dir_all(&plans_dir).expect("plans dir");
    std::fs::write(plans_dir.join("big.toml"), plan(10_000, 50)).expect("plan");
    let plans = load_dir(&plans_dir, dir.path()).expect("the generated plan is valid");
    let company = plans.company("big").expect("company");
    let dialled = E164::parse("+33180000001").expect("number");
    let now: jiff::Timestamp = "2026-12-01T10:00:00Z".parse().expect("instant");

    let stranger = Caller::Number(E164::parse("+33699999999").expect("number"));
    let listed = Caller::Number(E164::parse("+33610900123").expect("number"));
    let facts = |caller| CallFacts {
        caller,
        dialled: Some(&dialled),
        now,
        secretary_available: false,
        on_block_list: false,
        line: None,
    };

    c.bench_function("decide: caller in no list, 50 routes evaluated", |b| {
        b.iter(|| black_box(decide(company, &facts(black_box(&stranger)))).index)
    });
    c.bench_function("decide: caller in a list of 1,000, matched early", |b| {
        b.iter(|| black_box(decide(company, &facts(black_box(&listed)))).index)
    });
    c.bench_function("decide: anonymous caller", |b| {
        b.iter(|| black_box(decide(company, &facts(black_box(&Caller::Anonymous)))).index)
    });

    // The same plan with 100 contacts instead of 10,000: the cost must not follow.
    let small_dir = dir.path().join("small");
    std::fs::create_dir_all(&small_dir).expect("plans dir");
    std::fs::write(small_dir.join("big.toml"), plan(100, 50)).expect("plan");
    let small = load_dir(&small_dir, dir.path()).expect("the generated plan is valid");
    let small = small.company("big").expect("company");
    c.bench_function(
        "decide: caller in no list, 50 routes, only 100 contacts",
        |b| b.iter(|| black_box(decide(small, &facts(black_box(&stranger)))).index),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
