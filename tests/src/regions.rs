//! The committed slice of the 2023 region codes (tests/fixtures/regions): 郧西县 and 竹山县.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Place {
    pub code: String,
    pub name: String,
    pub parent: String,
}

#[derive(Debug, Clone, Default)]
pub struct Regions {
    pub counties: Vec<Place>,
    pub townships: Vec<Place>,
    pub villages: Vec<Place>,
}

pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/regions")
}

fn read(path: &Path, code_col: usize, parent_col: usize) -> anyhow::Result<Vec<Place>> {
    let mut r = csv::Reader::from_path(path)?;
    let mut out = Vec::new();
    for row in r.records() {
        let row = row?;
        out.push(Place {
            code: row[0].to_string(),
            name: row[code_col].to_string(),
            parent: row.get(parent_col).unwrap_or_default().to_string(),
        });
    }
    Ok(out)
}

impl Regions {
    pub fn load_fixture() -> anyhow::Result<Regions> {
        let d = fixture_dir();
        Ok(Regions {
            counties: read(&d.join("areas.csv"), 1, 2)?,
            townships: read(&d.join("streets.csv"), 1, 2)?,
            villages: read(&d.join("villages.csv"), 1, 2)?,
        })
    }

    pub fn townships_of(&self, county: &str) -> Vec<&Place> {
        self.townships.iter().filter(|t| t.parent == county).collect()
    }

    pub fn villages_of(&self, township: &str) -> Vec<&Place> {
        self.villages.iter().filter(|v| v.parent == township).collect()
    }

    pub fn name_of(&self, code: &str) -> &str {
        self.counties
            .iter()
            .chain(&self.townships)
            .chain(&self.villages)
            .find(|p| p.code == code)
            .map(|p| p.name.as_str())
            .unwrap_or("?")
    }
}
