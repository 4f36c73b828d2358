#!/usr/bin/env python3
"""Pre-operative surgery-risk and echocardiogram value sets (rule cw-preop-tests-intermediate-risk-surgery, CW-60).

Builds cw-preop-intermediate-risk-surgery, cw-preop-elevated-risk-surgery and cw-preop-echocardiogram
from /work/vsac expansions (cqframework/ecqm-content-qicore-2024 @ 9ebd48ff) and the existing repo value sets."""
import json, re, sys, collections
import os
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# system<TAB>code<TAB>display per OID, transcribed from the cqframework/ecqm-content-qicore-2024 mirror
VSAC_DIR = os.environ.get('VSAC_DIR', '/work/vsac')
VS = REPO + '/cds-rules/valuesets/'
SCT = 'http://snomed.info/sct'; CPT = 'http://www.ama-assn.org/go/cpt'; LOINC = 'http://loinc.org'
COMMIT = '9ebd48ffebf2ed2489f3904cc8393ebf8979bfc9'
def vsac(oid):
    rows = []
    for line in open(f'{VSAC_DIR}/{oid}.tsv'):
        s, c, d = line.rstrip('\n').split('\t')
        rows.append((s, c, d))
    return rows
def mpath(oid): return f'input/vocabulary/valueset/external/valueset-{oid}.json'
def repo_codes(name):
    v = json.load(open(VS + name + '.json'))
    return {(i['system'], c['code']) for i in v['compose']['include'] for c in i.get('concept', [])}

INTER = [('2.16.840.1.113883.3.117.1.7.1.255', 'General Surgery'),
         ('2.16.840.1.113883.3.117.1.7.1.257', 'Gynecological Surgery'),
         ('2.16.840.1.113883.3.117.1.7.1.272', 'Urological Surgery'),
         ('2.16.840.1.113883.3.117.1.7.1.258', 'Hip Fracture Surgery'),
         ('2.16.840.1.113883.3.117.1.7.1.259', 'Hip Replacement Surgery'),
         ('2.16.840.1.113883.3.117.1.7.1.261', 'Knee Replacement Surgery'),
         ('2.16.840.1.113883.3.464.1003.1184', 'Partial Arthroplasty of Hip')]
HIGH = [('2.16.840.1.113883.3.526.3.371', 'Cardiac Surgery'),
        ('2.16.840.1.113883.3.666.5.694', 'CABG Surgeries'),
        ('2.16.840.1.113883.3.3157.4052', 'Insertion or Replacement of Mechanical Circulatory Assist Device'),
        ('2.16.840.1.113883.3.117.1.7.1.260', 'Intracranial Neurosurgery')]
AIRWAY = ('2.16.840.1.113762.1.4.1248.251', 'Head, Neck, and Thoracic Surgeries with High Risk Airway Compromise')
# Displays that mark a cardiac, thoracic (lung, pleura, mediastinum, oesophagus, diaphragm, trachea), vascular,
# intracranial or other elevated-risk operation (liver, pancreas, adrenal, radical bladder, transplant).
HR = re.compile(r'thora|lung|pulmon|pneumon|bronch|pleur|mediastin|heart|cardi|coronar|aort|arter|vascul|aneurysm|'
                r'endarter|intracran|crani|brain|cerebr|esophag|oesoph|trache|diaphragm|vena cava|portal|portocaval|'
                r'venous|vein|carotid|thym|stern|chest|liver|hepat|pancrea|whipple|adrenal|cystectomy|'
                r'resection of urinary bladder|cystoprostatectomy|cystourethrectomy|exenteration|transplant|pericard|lobectomy|'
                r'spinal cord|dura|mening|shunt', re.I)
low = repo_codes('cw-low-risk-procedures')
high_codes = collections.OrderedDict()   # (sys, code) -> display
hi_src = collections.Counter()
for oid, t in HIGH:
    for s, c, d in vsac(oid):
        if s in (SCT, CPT):
            high_codes.setdefault((s, c), d); hi_src[t] += 1
airway_thoracic = 0
for s, c, d in vsac(AIRWAY[0]):
    if s == SCT and HR.search(d) and re.search(r'thora|lung|pulmon|pneumon|bronch|pleur|mediastin|esophag|trache|diaphragm|stern|chest|thym', d, re.I):
        high_codes.setdefault((s, c), d); airway_thoracic += 1
airway_all = {(s, c) for s, c, d in vsac(AIRWAY[0]) if s == SCT}
inter = collections.OrderedDict(); dropped_kw = collections.OrderedDict(); dropped_low = []; dropped_high = []; dropped_airway = []
for oid, t in INTER:
    for s, c, d in vsac(oid):
        if s not in (SCT, CPT): continue
        k = (s, c)
        if k in inter or k in dropped_kw: continue
        if HR.search(d): dropped_kw[k] = d; continue
        if k in high_codes: dropped_high.append(k); continue
        if k in airway_all: dropped_airway.append(k); continue
        if k in low: dropped_low.append(k); continue
        inter[k] = d
for k, d in dropped_kw.items(): high_codes.setdefault(k, d)
MAJOR = ('2.16.840.1.113883.3.3157.4056', 'Major Surgical Procedure')
major_kw = 0
for s, c, d in vsac(MAJOR[0]):
    if s == SCT and HR.search(d) and (s, c) not in inter and (s, c) not in low:
        if (s, c) not in high_codes: major_kw += 1
        high_codes.setdefault((s, c), d)
# CEVR low_risk_noncard_cpt_cond codes left out of cw-low-risk-procedures as intermediate risk
for c in ['47562', '47563', '49560']: inter[(CPT, c)] = ''
print('intermediate', len(inter), 'dropped keyword', len(dropped_kw), 'dropped high-set', len(dropped_high),
      'dropped airway', len(dropped_airway), 'dropped low-risk overlap', len(dropped_low), dropped_low, file=sys.stderr)
print('high', len(high_codes), dict(hi_src), 'airway thoracic', airway_thoracic, 'major kw', major_kw, file=sys.stderr)
assert not (set(inter) & set(high_codes))
def include(codes):
    by = collections.OrderedDict()
    for (s, c), d in codes.items():
        by.setdefault(s, []).append((c, d))
    out = []
    for s in [SCT, CPT, LOINC]:
        if s in by:
            out.append({'system': s, 'concept': [({'code': c} if s == CPT else {'code': c, 'display': d}) for c, d in by[s]]})
    return out
def src(oid, t): return f'VSAC "{t}" {oid} ({mpath(oid)})'
mirror = f'cqframework/ecqm-content-qicore-2024 commit {COMMIT[:8]}, VSAC 2024 eCQM expansions'
iv = {
 'resourceType': 'ValueSet', 'id': 'cw-preop-intermediate-risk-surgery',
 'url': 'https://hookwise.dev/fhir/ValueSet/cw-preop-intermediate-risk-surgery', 'version': '1.0.0',
 'name': 'CwPreopIntermediateRiskSurgery', 'title': 'Intermediate-risk non-cardiothoracic surgery', 'status': 'active',
 'description': 'Elective intermediate-risk non-cardiothoracic operations (abdominal general surgery, gynaecological and urological surgery, hip and knee replacement, hip fracture surgery, laparoscopic cholecystectomy, ventral hernia repair) as draft or planned orders coded with SNOMED CT or CPT, before which a routine chest X-ray, echocardiogram or spirometry is low value (CEVR measures 10-12: low- or intermediate-risk non-cardiothoracic procedure). Cardiac, thoracic, lung-resection, oesophageal, major vascular, intracranial and other elevated-risk operations are left out (see cw-preop-elevated-risk-surgery), and so are the low-risk procedures of cw-low-risk-procedures (the low-risk pre-operative rule covers them).',
 'purpose': ('SNOMED CT codes and displays, and CPT 27125, of the VTE-prophylaxis surgical categories (CMS108/CMS190) and CMS56: '
   + '; '.join(src(o, t) for o, t in INTER) + f'; {mirror}. Left out: (a) {len(dropped_kw)} codes whose display names a cardiac, thoracic '
   '(lung, pleura, mediastinum, bronchus, trachea, oesophagus, diaphragm, chest wall, sternum, thymus), vascular (artery, aorta, aneurysm, vein, '
   'portal or caval shunt), intracranial, spinal-cord or meningeal, liver, pancreatic, adrenal, radical bladder (cystectomy, cystourethrectomy, exenteration) or '
   'transplant operation, by a case-insensitive match of the display against: ' + HR.pattern + f'; they go to cw-preop-elevated-risk-surgery; '
   f'(b) {len(dropped_high)} codes also in VSAC Cardiac Surgery, CABG Surgeries, Mechanical Circulatory Assist Device or Intracranial Neurosurgery; '
   f'(c) {len(dropped_airway)} codes also in ' + src(*AIRWAY) + ' (airway-risk operations, not routine); '
   f'(d) {len(dropped_low)} codes also in https://hookwise.dev/fhir/ValueSet/cw-low-risk-procedures ({", ".join(c for _, c in dropped_low)}), so that a '
   'low-risk procedure gets the low-risk card only; (e) the ICD-10-PCS codes of these value sets (planned orders are not coded in ICD-10-PCS); '
   'VSAC Intracranial Neurosurgery 2.16.840.1.113883.3.117.1.7.1.260 as a whole. Added: CPT 47562, 47563 (laparoscopic cholecystectomy) and 49560 '
   '(ventral/incisional hernia repair) of CEVR low_risk_noncard_cpt_cond, cevrTMC/LowValueCareCEVR 02_flag.sas (commit '
   '7ede022d68dad0adbdf42f17e697b67d229b922a), which cw-low-risk-procedures leaves out as intermediate risk. CEVR counts its BETOS categories '
   '(P1, P3D, P4A-P4C, P5C, P5D, P8A, P8G), which have no code list here. CPT codes are listed without descriptors (AMA licence).'),
 'compose': {'include': include(inter)}}
hv = {
 'resourceType': 'ValueSet', 'id': 'cw-preop-elevated-risk-surgery',
 'url': 'https://hookwise.dev/fhir/ValueSet/cw-preop-elevated-risk-surgery', 'version': '1.0.0',
 'name': 'CwPreopElevatedRiskSurgery', 'title': 'Cardiac, thoracic, lung-resection, major vascular, intracranial or other elevated-risk surgery',
 'status': 'active',
 'description': 'Operations planned or ordered with a pre-operative test before which the test may be indicated: cardiac surgery, CABG and circulatory assist devices, lung resection and other thoracic or oesophageal surgery, major vascular, intracranial and other elevated-risk operations (liver, pancreas, adrenal, radical bladder, transplant). An exclusion of cw-preop-tests-intermediate-risk-surgery.',
 'purpose': ('SNOMED CT and CPT codes and displays of ' + '; '.join(src(o, t) for o, t in HIGH) + f'; the {airway_thoracic} SNOMED CT codes of '
   + src(*AIRWAY) + ' whose display names a thoracic site (lung, pleura, mediastinum, bronchus, trachea, oesophagus, diaphragm, chest, sternum, thymus); '
   f'and the {len(dropped_kw)} SNOMED CT codes left out of cw-preop-intermediate-risk-surgery by their display (see its purpose) from VSAC General '
   'Surgery, Gynecological Surgery, Urological Surgery, Hip Fracture Surgery, Hip Replacement Surgery, Knee Replacement Surgery and Partial Arthroplasty '
   f'of Hip; and the {major_kw} further SNOMED CT codes of ' + src(*MAJOR) + ' whose display matches the same pattern (aortic and other arterial '
   f'surgery, aneurysm repair, endarterectomy, lung, oesophageal, cardiac, intracranial surgery and the like); {mirror}. ICD-10-PCS codes left out (planned orders are not coded in ICD-10-PCS). CPT codes are listed without descriptors (AMA licence).'),
 'compose': {'include': include(high_codes)}}
stress = json.load(open(VS + 'cw-preop-cardiac-imaging-stress.json'))
ECHO = {CPT: ['93303', '93304', '93306', '93307', '93308', '93312', '93315', '93318'], LOINC: ['34552-0'], SCT: ['40701008', '105376000']}
echo = collections.OrderedDict()
for inc in stress['compose']['include']:
    for c in inc['concept']:
        if c['code'] in ECHO.get(inc['system'], []): echo[(inc['system'], c['code'])] = c.get('display', '')
assert len(echo) == 11, echo
ev = {
 'resourceType': 'ValueSet', 'id': 'cw-preop-echocardiogram',
 'url': 'https://hookwise.dev/fhir/ValueSet/cw-preop-echocardiogram', 'version': '1.0.0', 'name': 'CwPreopEchocardiogram',
 'title': 'Resting echocardiogram (transthoracic or transoesophageal)', 'status': 'active',
 'description': 'Resting transthoracic or transoesophageal echocardiograms, without stress echocardiography: the echocardiogram of CEVR measure 11, for cw-preop-tests-intermediate-risk-surgery (stress tests are left to cw-preop-cardiopulmonary-tests-cataract, which covers low-risk procedures only).',
 'purpose': ('The resting-echocardiogram subset of https://hookwise.dev/fhir/ValueSet/cw-preop-cardiac-imaging-stress: CPT 93303, 93304, 93306-93308, 93312, '
   '93315, 93318 (CEVR echocardiogram_cond, measure 11, cevrTMC/LowValueCareCEVR 02_flag.sas, commit 7ede022d68dad0adbdf42f17e697b67d229b922a); LOINC 34552-0 '
   '"Cardiac 2D echo panel" (HL7 US Core us-core-clinical-test-codes); SNOMED CT 40701008 and 105376000 (echocardiography, transoesophageal echocardiography) '
   'from HL7/fhir-ips input/fsh/valuesets/ProceduresSnomedCtIpsFreeSet.fsh (commit b3f82c83600810651991dbd8a3a1991ec63d794f). Left out: stress '
   'echocardiography (93350, 93351, 433233004) and all other stress, nuclear, MRI and CT codes of that set. CPT codes are listed without descriptors (AMA licence).'),
 'compose': {'include': include(echo)}}
for v in (iv, hv, ev):
    v2 = {}
    for k, x in v.items():
        v2[k] = x
        if k == 'status': v2['experimental'] = False; v2['publisher'] = 'hookwise'
    v = v2
    json.dump(v, open(VS + v['id'] + '.json', 'w'), indent=2, ensure_ascii=False); open(VS + v['id'] + '.json', 'a').write('\n')
