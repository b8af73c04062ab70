-- Validation and normalisation of Ravelin /v2/registration bodies, in SQL.
--
-- The twin of outbox_worker/payload.py (rules and messages in outbox_worker/validation.py):
-- for the same body both report the same problems as '<json path>: <message>', and
-- normalize_update() stores the same jsonb as RegistrationUpdate.to_wire(). Change both together;
-- tests/integration/test_sql_validate.py runs the shared case table against each.
--
-- Every function here is IMMUTABLE: its result depends on its arguments only.

-- ISO 3166-1 alpha-2 and alpha-3 codes, generated once from pycountry 26.2.16
-- (the migration must not import pycountry at run time).
CREATE OR REPLACE FUNCTION outbox.iso_country_codes() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT '{
    ABW, AD, AE, AF, AFG, AG, AGO, AI, AIA, AL, ALA, ALB, AM, AND, AO, AQ, AR, ARE, ARG, ARM,
    AS, ASM, AT, ATA, ATF, ATG, AU, AUS, AUT, AW, AX, AZ, AZE, BA, BB, BD, BDI, BE, BEL, BEN,
    BES, BF, BFA, BG, BGD, BGR, BH, BHR, BHS, BI, BIH, BJ, BL, BLM, BLR, BLZ, BM, BMU, BN, BO,
    BOL, BQ, BR, BRA, BRB, BRN, BS, BT, BTN, BV, BVT, BW, BWA, BY, BZ, CA, CAF, CAN, CC, CCK,
    CD, CF, CG, CH, CHE, CHL, CHN, CI, CIV, CK, CL, CM, CMR, CN, CO, COD, COG, COK, COL, COM,
    CPV, CR, CRI, CU, CUB, CUW, CV, CW, CX, CXR, CY, CYM, CYP, CZ, CZE, DE, DEU, DJ, DJI, DK,
    DM, DMA, DNK, DO, DOM, DZ, DZA, EC, ECU, EE, EG, EGY, EH, ER, ERI, ES, ESH, ESP, EST, ET,
    ETH, FI, FIN, FJ, FJI, FK, FLK, FM, FO, FR, FRA, FRO, FSM, GA, GAB, GB, GBR, GD, GE, GEO,
    GF, GG, GGY, GH, GHA, GI, GIB, GIN, GL, GLP, GM, GMB, GN, GNB, GNQ, GP, GQ, GR, GRC, GRD,
    GRL, GS, GT, GTM, GU, GUF, GUM, GUY, GW, GY, HK, HKG, HM, HMD, HN, HND, HR, HRV, HT, HTI,
    HU, HUN, ID, IDN, IE, IL, IM, IMN, IN, IND, IO, IOT, IQ, IR, IRL, IRN, IRQ, IS, ISL, ISR,
    IT, ITA, JAM, JE, JEY, JM, JO, JOR, JP, JPN, KAZ, KE, KEN, KG, KGZ, KH, KHM, KI, KIR, KM,
    KN, KNA, KOR, KP, KR, KW, KWT, KY, KZ, LA, LAO, LB, LBN, LBR, LBY, LC, LCA, LI, LIE, LK,
    LKA, LR, LS, LSO, LT, LTU, LU, LUX, LV, LVA, LY, MA, MAC, MAF, MAR, MC, MCO, MD, MDA, MDG,
    MDV, ME, MEX, MF, MG, MH, MHL, MK, MKD, ML, MLI, MLT, MM, MMR, MN, MNE, MNG, MNP, MO, MOZ,
    MP, MQ, MR, MRT, MS, MSR, MT, MTQ, MU, MUS, MV, MW, MWI, MX, MY, MYS, MYT, MZ, NA, NAM, NC,
    NCL, NE, NER, NF, NFK, NG, NGA, NI, NIC, NIU, NL, NLD, NO, NOR, NP, NPL, NR, NRU, NU, NZ,
    NZL, OM, OMN, PA, PAK, PAN, PCN, PE, PER, PF, PG, PH, PHL, PK, PL, PLW, PM, PN, PNG, POL,
    PR, PRI, PRK, PRT, PRY, PS, PSE, PT, PW, PY, PYF, QA, QAT, RE, REU, RO, ROU, RS, RU, RUS,
    RW, RWA, SA, SAU, SB, SC, SD, SDN, SE, SEN, SG, SGP, SGS, SH, SHN, SI, SJ, SJM, SK, SL, SLB,
    SLE, SLV, SM, SMR, SN, SO, SOM, SPM, SR, SRB, SS, SSD, ST, STP, SUR, SV, SVK, SVN, SWE, SWZ,
    SX, SXM, SY, SYC, SYR, SZ, TC, TCA, TCD, TD, TF, TG, TGO, TH, THA, TJ, TJK, TK, TKL, TKM,
    TL, TLS, TM, TN, TO, TON, TR, TT, TTO, TUN, TUR, TUV, TV, TW, TWN, TZ, TZA, UA, UG, UGA,
    UKR, UM, UMI, URY, US, USA, UY, UZ, UZB, VA, VAT, VC, VCT, VE, VEN, VG, VGB, VI, VIR, VN,
    VNM, VU, VUT, WF, WLF, WS, WSM, YE, YEM, YT, ZA, ZAF, ZM, ZMB, ZW, ZWE
}'::text[]
$$;

-- The shape of a registration update: key -> rule, or key -> nested object shape.
-- Rules: string, boolean, id (string or integer), epoch_ms, password_hash, telephone, country,
-- ip_address, latitude, longitude, tags (object of booleans). Unknown keys are allowed anywhere.
CREATE OR REPLACE FUNCTION outbox.update_shape() RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
WITH part AS (
    SELECT
        jsonb_build_object(
            'latitude', 'latitude', 'longitude', 'longitude', 'country', 'string',
            'postalCode', 'string', 'addresseeName', 'string', 'street1', 'string',
            'street2', 'string', 'neighbourhood', 'string', 'zone', 'string', 'city', 'string',
            'region', 'string', 'poBoxNumber', 'string'
        ) AS location,
        jsonb_build_object(
            'email', 'string', 'name', 'string', 'emailVerifiedTime', 'epoch_ms',
            'telephone', 'telephone', 'telephoneVerifiedTime', 'epoch_ms',
            'telephoneCountry', 'country', 'registrationTime', 'epoch_ms', 'tags', 'tags'
        ) AS person
)
SELECT jsonb_build_object(
    'timestamp', 'epoch_ms',
    'registration', jsonb_build_object(
        'success', 'boolean', 'username', 'string', 'guestAccount', 'boolean',
        'marketingEmailsEnabled', 'boolean', 'timestamp', 'epoch_ms',
        'app', jsonb_build_object('name', 'string', 'platform', 'string', 'domain', 'string'),
        'registrationMechanism', jsonb_build_object(
            'password', jsonb_build_object(
                'passwordHashed', 'password_hash', 'success', 'boolean', 'failureReason', 'string'
            )
        )
    ),
    'customer', person || jsonb_build_object(
        'customerId', 'id', 'givenName', 'string', 'familyName', 'string', 'location', location
    ),
    'supplier', person || jsonb_build_object(
        'supplierId', 'id', 'groupId', 'id', 'groupName', 'string', 'type', 'string',
        'level', 'string', 'employmentType', 'string', 'transportType', 'string',
        'category', 'string', 'homeLocation', location
    ),
    'device', jsonb_build_object(
        'deviceId', 'id', 'type', 'string', 'manufacturer', 'string', 'model', 'string',
        'os', 'string', 'language', 'string', 'userAgent', 'string', 'ipAddress', 'ip_address',
        'location', location
    )
)
FROM part
$$;

-- The problem with one value under one rule, or NULL when it follows the rule.
CREATE OR REPLACE FUNCTION outbox.value_problem(value jsonb, rule text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    kind text := jsonb_typeof(value);
    is_integer boolean := kind = 'number' AND value::text ~ '^-?[0-9]+$';
    str text := CASE WHEN kind = 'string' THEN value #>> '{}' END;
    num numeric := CASE WHEN kind = 'number' THEN value::text::numeric END;
BEGIN
    CASE rule
    WHEN 'object' THEN
        RETURN CASE WHEN kind <> 'object' THEN 'must be an object' END;
    WHEN 'boolean' THEN
        RETURN CASE WHEN kind <> 'boolean' THEN 'must be a boolean' END;
    WHEN 'string' THEN
        RETURN CASE WHEN kind <> 'string' THEN 'must be a string' END;
    WHEN 'id' THEN
        RETURN CASE WHEN kind <> 'string' AND NOT is_integer THEN 'must be a string or an integer' END;
    WHEN 'epoch_ms' THEN
        -- Ravelin merges by this value: seconds or nanoseconds would silently reorder history.
        RETURN CASE
            WHEN NOT is_integer THEN 'must be an integer'
            WHEN num >= 1000000000000 AND num < 10000000000000 THEN NULL
            WHEN num >= 1000000000 AND num < 10000000000 THEN 'looks like seconds; send milliseconds'
            WHEN num >= 10000000000000 THEN 'looks like micro- or nanoseconds; send milliseconds'
            ELSE 'must be epoch milliseconds (1000000000000 <= t < 10000000000000)'
        END;
    WHEN 'latitude', 'longitude' THEN
        RETURN CASE
            WHEN kind <> 'number' THEN 'must be a number'
            WHEN rule = 'latitude' AND abs(num) > 90 THEN 'must be between -90 and 90'
            WHEN rule = 'longitude' AND abs(num) > 180 THEN 'must be between -180 and 180'
        END;
    ELSE
        NULL;  -- the string rules below
    END CASE;

    IF kind <> 'string' THEN
        RETURN 'must be a string';
    END IF;
    CASE rule
    WHEN 'password_hash' THEN
        RETURN CASE WHEN str !~ '^[0-9a-f]{64}$'
            THEN 'must be 64 lower-case hex characters (sha256); use hash_password()' END;
    WHEN 'telephone' THEN
        RETURN CASE WHEN str !~ '^\+[1-9][0-9]{1,14}$' THEN 'must be E.164, e.g. +447700900123' END;
    WHEN 'country' THEN
        RETURN CASE WHEN str <> ALL (outbox.iso_country_codes())
            THEN 'must be an upper-case ISO 3166-1 alpha-3 or alpha-2 country code' END;
    WHEN 'ip_address' THEN
        RETURN CASE WHEN NOT outbox.is_ip_address(str) THEN 'must be an IPv4 or IPv6 address' END;
    END CASE;
END
$$;

-- A plain IPv4 or IPv6 address, as Python's ipaddress.ip_address() accepts it: the alphabet
-- check refuses CIDR prefixes ('10.0.0.0/8'), zones ('fe80::1%eth0') and padding up front, and
-- IPv4 is matched exactly because inet tolerates short and zero-padded forms that Python refuses.
CREATE OR REPLACE FUNCTION outbox.is_ip_address(address text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    octet constant text := '(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';
BEGIN
    IF address !~ '^[0-9A-Fa-f:.]+$' THEN
        RETURN false;
    END IF;
    IF position(':' IN address) = 0 THEN
        RETURN address ~ ('^' || octet || '(\.' || octet || '){3}$');
    END IF;
    IF address ~ '\.' AND address !~ ('[:]' || octet || '(\.' || octet || '){3}$') THEN
        RETURN false;  -- an embedded IPv4 tail must be exact too
    END IF;
    RETURN family(address::inet) = 6;
EXCEPTION WHEN invalid_text_representation THEN
    RETURN false;
END
$$;

-- Problems of one object against its shape; prefix is the object's path plus '.' ('' at the root).
-- Absent and null members are skipped: required members are checked by validate_update().
CREATE OR REPLACE FUNCTION outbox.shape_problems(obj jsonb, shape jsonb, prefix text)
RETURNS text[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    problems text[] := '{}';
    member record;
    member_value jsonb;
    path text;
    problem text;
BEGIN
    FOR member IN SELECT s.key, s.value AS rule FROM jsonb_each(shape) AS s LOOP
        member_value := obj -> member.key;
        CONTINUE WHEN member_value IS NULL OR member_value = 'null'::jsonb;
        path := prefix || member.key;
        IF jsonb_typeof(member.rule) = 'object' OR member.rule = '"tags"' THEN
            problem := outbox.value_problem(member_value, 'object');
        ELSE
            problem := outbox.value_problem(member_value, member.rule #>> '{}');
        END IF;
        IF problem IS NOT NULL THEN
            problems := problems || (path || ': ' || problem);
        ELSIF jsonb_typeof(member.rule) = 'object' THEN
            problems := problems || outbox.shape_problems(member_value, member.rule, path || '.');
        ELSIF member.rule = '"tags"' THEN
            problems := problems || ARRAY(
                SELECT path || '.' || tag.key || ': must be a boolean'
                FROM jsonb_each(member_value) AS tag
                WHERE jsonb_typeof(tag.value) <> 'boolean'
            );
        END IF;
    END LOOP;
    RETURN problems;
END
$$;

-- Paths of every member named "password" whose value is a string, at any depth: plaintext
-- passwords never enter the outbox. Array elements are named path[index].
CREATE OR REPLACE FUNCTION outbox.plaintext_password_paths(node jsonb, path text DEFAULT '')
RETURNS text[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    paths text[] := '{}';
    child record;
    child_path text;
BEGIN
    IF jsonb_typeof(node) = 'object' THEN
        FOR child IN SELECT e.key, e.value FROM jsonb_each(node) AS e LOOP
            child_path := CASE WHEN path = '' THEN child.key ELSE path || '.' || child.key END;
            IF child.key = 'password' AND jsonb_typeof(child.value) = 'string' THEN
                paths := paths || child_path;
            END IF;
            paths := paths || outbox.plaintext_password_paths(child.value, child_path);
        END LOOP;
    ELSIF jsonb_typeof(node) = 'array' THEN
        FOR child IN SELECT elem, ordinality - 1 AS idx
                     FROM jsonb_array_elements(node) WITH ORDINALITY AS e(elem, ordinality) LOOP
            paths := paths || outbox.plaintext_password_paths(child.elem, path || '[' || child.idx || ']');
        END LOOP;
    END IF;
    RETURN paths;
END
$$;

-- Every problem of a registration update as '<json path>: <message>'; empty when it is valid.
CREATE OR REPLACE FUNCTION outbox.validate_update(payload jsonb) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    whole text[];     -- rules over the whole body; they win over a type problem at the same path
    seen text[];
    problems text[];
    registration jsonb := payload -> 'registration';
BEGIN
    IF payload IS NULL OR jsonb_typeof(payload) <> 'object' THEN
        RETURN ARRAY['$: must be an object'];
    END IF;

    seen := outbox.plaintext_password_paths(payload);
    whole := ARRAY(SELECT p || ': plaintext password refused; send passwordHashed (use hash_password())'
                   FROM unnest(seen) AS p);
    IF coalesce(payload -> 'customer', 'null') <> 'null' AND coalesce(payload -> 'supplier', 'null') <> 'null' THEN
        whole := whole || 'supplier: send customer or supplier, not both'::text;
        seen := seen || 'supplier'::text;
    END IF;

    problems := outbox.shape_problems(payload, outbox.update_shape(), '');
    IF NOT payload ? 'timestamp' THEN
        problems := problems || 'timestamp: is required'::text;
    ELSIF payload -> 'timestamp' = 'null' THEN
        problems := problems || 'timestamp: must be an integer'::text;
    END IF;
    IF registration IS NULL THEN
        problems := problems || 'registration: is required'::text;
    ELSIF registration = 'null' THEN
        problems := problems || 'registration: must be an object'::text;
    ELSIF jsonb_typeof(registration) = 'object' THEN
        IF NOT registration ? 'success' THEN
            problems := problems || 'registration.success: is required'::text;
        ELSIF registration -> 'success' = 'null' THEN
            problems := problems || 'registration.success: must be a boolean'::text;
        END IF;
    END IF;

    RETURN whole || ARRAY(
        SELECT p FROM unnest(problems) AS p
        WHERE NOT EXISTS (SELECT FROM unnest(seen) AS s WHERE left(p, length(s) + 2) = s || ': ')
    );
END
$$;

-- A valid update as RegistrationUpdate.to_wire() stores it: null members dropped at every depth,
-- integer ids turned into strings (123 -> "123").
CREATE OR REPLACE FUNCTION outbox.normalize_update(payload jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    result jsonb := jsonb_strip_nulls(payload);
    id_path text[];
BEGIN
    FOREACH id_path SLICE 1 IN ARRAY ARRAY[
        ['customer', 'customerId'], ['supplier', 'supplierId'],
        ['supplier', 'groupId'], ['device', 'deviceId']
    ] LOOP
        IF jsonb_typeof(result #> id_path) = 'number' THEN
            result := jsonb_set(result, id_path, to_jsonb(result #>> id_path));
        END IF;
    END LOOP;
    RETURN result;
END
$$;
