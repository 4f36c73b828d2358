//! UCUM units for the quantities rules compare: drug amounts (mg, mcg, g),
//! volumes (mL), and the common laboratory units, with the analyte-specific
//! conversions between mass, molar and percentage units.
//!
//! A unit that is not listed here is unknown, and a value in an unknown unit
//! never matches: a guessed conversion is worse than no answer.

/// What a unit measures. Two units convert when they measure the same thing,
/// or, for a known analyte, between mass and molar concentration or
/// between the two HbA1c scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    /// Mass; the base is the gram.
    Mass,
    /// Volume; the base is the litre.
    Volume,
    /// Mass per volume; the base is g/L.
    MassConcentration,
    /// Amount per volume; the base is mol/L.
    MolarConcentration,
    /// A percentage (the NGSP HbA1c scale among others).
    Percent,
    /// mmol/mol (the IFCC HbA1c scale).
    MolarFraction,
    /// Volume per time (creatinine clearance, eGFR); the base is mL/min.
    Flow,
    /// Flow per body surface area (eGFR); the base is mL/min/{1.73_m2}.
    FlowPerArea,
    /// Height or length; the base is the metre.
    Length,
}

/// A unit: what it measures and its size in the dimension's base unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Unit {
    /// What the unit measures.
    pub dimension: Dimension,
    /// How many base units one of this unit is.
    pub scale: f64,
}

/// Units by their UCUM code, with the spellings EHRs commonly send instead.
const UNITS: &[(&[&str], Dimension, f64)] = {
    use Dimension::*;
    &[
        (&["g"], Mass, 1.0),
        (&["mg"], Mass, 1e-3),
        (&["ug", "mcg", "µg", "μg"], Mass, 1e-6),
        (&["ng"], Mass, 1e-9),
        (&["kg"], Mass, 1e3),
        (&["[lb_av]", "lb", "lbs"], Mass, 453.592_37),
        (&["L", "l"], Volume, 1.0),
        (&["mL", "ml"], Volume, 1e-3),
        (&["g/L"], MassConcentration, 1.0),
        (&["g/dL"], MassConcentration, 10.0),
        (&["mg/dL"], MassConcentration, 1e-2),
        (&["mg/L"], MassConcentration, 1e-3),
        (&["ug/L", "mcg/L", "µg/L"], MassConcentration, 1e-6),
        (&["ng/mL"], MassConcentration, 1e-6),
        (&["ug/dL", "mcg/dL", "µg/dL"], MassConcentration, 1e-5),
        (&["ng/dL"], MassConcentration, 1e-8),
        (&["pg/mL"], MassConcentration, 1e-9),
        (&["mg/mL"], MassConcentration, 1.0),
        (&["ug/mL", "mcg/mL", "µg/mL"], MassConcentration, 1e-3),
        (&["mol/L"], MolarConcentration, 1.0),
        (&["mmol/L"], MolarConcentration, 1e-3),
        (&["umol/L", "µmol/L", "μmol/L"], MolarConcentration, 1e-6),
        (&["nmol/L"], MolarConcentration, 1e-9),
        (&["%"], Percent, 1.0),
        (&["mmol/mol"], MolarFraction, 1.0),
        (&["mL/min"], Flow, 1.0),
        (
            &[
                "mL/min/{1.73_m2}",
                "mL/min/1.73m2",
                "mL/min/1.73_m2",
                "mL/min/{1.73m2}",
            ],
            FlowPerArea,
            1.0,
        ),
        (&["m"], Length, 1.0),
        (&["cm"], Length, 1e-2),
        (&["[in_i]", "in"], Length, 0.0254),
    ]
};

impl Unit {
    /// The unit for a UCUM code (or a common spelling of one).
    pub fn parse(code: &str) -> Option<Unit> {
        let code = code.trim();
        UNITS
            .iter()
            .find(|(codes, _, _)| codes.contains(&code))
            .map(|&(_, dimension, scale)| Unit { dimension, scale })
    }
}

/// A laboratory analyte whose units convert across dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Analyte {
    /// Serum or plasma creatinine (113.12 g/mol: 1 mg/dL = 88.42 µmol/L).
    Creatinine,
    /// Haemoglobin A1c, NGSP % and IFCC mmol/mol.
    HbA1c,
}

impl Analyte {
    /// The analyte a LOINC code measures, for the codes the conversions cover.
    pub fn of_loinc(code: &str) -> Option<Analyte> {
        match code {
            // Creatinine [Mass/volume] and [Moles/volume] in serum, plasma or blood.
            "2160-0" | "38483-4" | "14682-9" | "59826-8" | "77140-2" => Some(Analyte::Creatinine),
            // Hemoglobin A1c/Hemoglobin.total in blood (%, mmol/mol, by HPLC, IFCC,
            // by calculation, in dried blood spot: the last two from VSAC HbA1c
            // Laboratory Test, cds-rules/valuesets/hba1c.json).
            "4548-4" | "17856-6" | "59261-8" | "41995-2" | "4549-2" | "17855-8" | "96595-4" => {
                Some(Analyte::HbA1c)
            }
            _ => None,
        }
    }

    /// Grams per mole, for mass ↔ molar conversions.
    fn molar_mass(self) -> Option<f64> {
        match self {
            Analyte::Creatinine => Some(113.12),
            Analyte::HbA1c => None,
        }
    }
}

/// A quantity whose LOINC codes fix the unit it is read in: the inputs of
/// kidney function. The record reader counts a value of one of these codes
/// whose unit does not convert as a skipped element, and the kidney
/// criterion reads values through [`Measured::read`], so both agree on what
/// is unreadable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measured {
    /// Body weight, read in kg.
    BodyWeight,
    /// Serum or plasma creatinine, read in mg/dL.
    Creatinine,
    /// Estimated GFR, read in mL/min/{1.73_m2}.
    Egfr,
}

impl Measured {
    /// What a LOINC code measures, for the codes of the bundled value sets
    /// `body-weight`, `serum-creatinine` and `egfr` (`cds-rules/valuesets/`).
    pub fn of_loinc(code: &str) -> Option<Measured> {
        match code {
            // Body weight; Body weight Measured.
            "29463-7" | "3141-9" => Some(Measured::BodyWeight),
            code if Analyte::of_loinc(code) == Some(Analyte::Creatinine) => {
                Some(Measured::Creatinine)
            }
            // VSAC Estimated Glomerular Filtration Rate, plus 33914-3 (MDRD).
            "48642-3" | "48643-1" | "50044-7" | "50210-4" | "62238-1" | "69405-9" | "70969-1"
            | "77147-7" | "88293-6" | "88294-4" | "94677-2" | "98979-8" | "98980-6" | "33914-3" => {
                Some(Measured::Egfr)
            }
            _ => None,
        }
    }

    /// The UCUM unit values are read in.
    pub fn unit(self) -> &'static str {
        match self {
            Measured::BodyWeight => "kg",
            Measured::Creatinine => "mg/dL",
            Measured::Egfr => "mL/min/{1.73_m2}",
        }
    }

    /// `value` in `unit`, expressed in [`Measured::unit`]; `None` without a
    /// unit, in a unit that does not convert, or for a value that cannot be
    /// a measurement (zero, negative, not finite).
    pub fn read(self, value: f64, unit: Option<&str>) -> Option<f64> {
        let analyte = (self == Measured::Creatinine).then_some(Analyte::Creatinine);
        let converted = convert(value, unit?, self.unit(), analyte)?;
        (converted.is_finite() && converted > 0.0).then_some(converted)
    }
}

/// `value` in unit `from`, expressed in unit `to`; `None` when either unit
/// is unknown or they do not convert (for the analyte, when given).
pub fn convert(value: f64, from: &str, to: &str, analyte: Option<Analyte>) -> Option<f64> {
    if from.trim() == to.trim() {
        return Some(value);
    }
    let (from, to) = (Unit::parse(from)?, Unit::parse(to)?);
    let base = value * from.scale;
    use Dimension::*;
    let converted = match (from.dimension, to.dimension) {
        (a, b) if a == b => base,
        (MassConcentration, MolarConcentration) => base / analyte?.molar_mass()?,
        (MolarConcentration, MassConcentration) => base * analyte?.molar_mass()?,
        // IFCC = 10.929 × (NGSP − 2.15) (the NGSP/IFCC master equation).
        (Percent, MolarFraction) if analyte == Some(Analyte::HbA1c) => 10.929 * (base - 2.15),
        (MolarFraction, Percent) if analyte == Some(Analyte::HbA1c) => base / 10.929 + 2.15,
        _ => return None,
    };
    Some(converted / to.scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 0.01 * b.abs().max(1.0))
    }

    #[test]
    fn masses_and_volumes_convert_within_their_dimension() {
        assert!(close(convert(125.0, "mcg", "mg", None), 0.125));
        assert!(close(convert(0.125, "mg", "ug", None), 125.0));
        assert!(close(convert(1.5, "g", "mg", None), 1500.0));
        assert!(close(convert(154.0, "[lb_av]", "kg", None), 69.85));
        assert!(close(convert(5.0, "mL", "L", None), 0.005));
        assert_eq!(convert(1.0, "mg", "mL", None), None, "mass is not volume");
    }

    #[test]
    fn creatinine_converts_between_mass_and_molar_units_only_as_creatinine() {
        let creatinine = Some(Analyte::Creatinine);
        assert!(close(convert(1.0, "mg/dL", "umol/L", creatinine), 88.4));
        assert!(close(convert(176.8, "µmol/L", "mg/dL", creatinine), 2.0));
        assert_eq!(convert(1.0, "mg/dL", "umol/L", None), None);
        assert_eq!(convert(1.0, "mg/dL", "umol/L", Some(Analyte::HbA1c)), None);
    }

    #[test]
    fn hba1c_converts_between_the_ngsp_and_ifcc_scales() {
        let a1c = Some(Analyte::HbA1c);
        assert!(close(convert(7.0, "%", "mmol/mol", a1c), 53.0));
        assert!(close(convert(53.0, "mmol/mol", "%", a1c), 7.0));
        assert_eq!(convert(7.0, "%", "mmol/mol", None), None);
    }

    #[test]
    fn equal_mass_concentrations_and_unknown_units() {
        assert!(close(convert(12.0, "ng/mL", "ug/L", None), 12.0));
        assert_eq!(convert(1.0, "mg/dL", "furlongs", None), None);
        assert_eq!(Unit::parse("bogus"), None);
        assert_eq!(convert(3.0, "{tbl}", "{tbl}", None), Some(3.0), "same code");
    }

    #[test]
    fn kidney_inputs_read_in_their_fixed_units() {
        assert_eq!(Measured::of_loinc("3141-9"), Some(Measured::BodyWeight));
        assert_eq!(Measured::of_loinc("14682-9"), Some(Measured::Creatinine));
        assert_eq!(Measured::of_loinc("98979-8"), Some(Measured::Egfr));
        assert!(close(
            Measured::BodyWeight.read(132.0, Some("[lb_av]")),
            59.87
        ));
        assert!(close(Measured::Creatinine.read(176.8, Some("umol/L")), 2.0));
        assert_eq!(Measured::BodyWeight.read(60.0, None), None, "no unit");
        assert_eq!(Measured::Creatinine.read(1.0, Some("mg")), None);
        assert_eq!(Measured::Creatinine.read(0.0, Some("mg/dL")), None);
    }
}
