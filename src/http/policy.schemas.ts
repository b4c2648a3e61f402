/** Request and response schemas of the dormant-key policy endpoints (SPEC §10). */
import { z } from 'zod';
import { ENVIRONMENTS } from '../keys/key-format.ts';
import {
  DORMANT_ACTIONS,
  MAX_AFTER_DAYS,
  MIN_AFTER_DAYS,
  SPARE_REASONS,
} from '../policies/dormant.types.ts';
import { Scopes, Timestamp, Uuid } from './schemas.ts';

const policyFields = {
  enabled: z.boolean().meta({ description: 'Off by default: nothing is acted on.' }),
  after_days: z
    .number()
    .int()
    .min(MIN_AFTER_DAYS)
    .max(MAX_AFTER_DAYS)
    .meta({ description: 'A key unused (or never used) for this many days is dormant.' }),
  action: z.enum(DORMANT_ACTIONS).meta({
    description:
      'notify: audit key.dormant once per dormant spell; revoke: revoke the key (audited, actor policy).',
  }),
};

export const DormantPolicyBody = z
  .strictObject({
    ...policyFields,
    exclude_environments: z.array(z.enum(ENVIRONMENTS)).max(10).optional(),
    exclude_scopes: Scopes.optional().meta({
      description: 'Keys holding any of these scopes are never acted on.',
    }),
  })
  .meta({ id: 'DormantKeyPolicyRequest' });

export const DormantPolicyJson = z
  .object({
    ...policyFields,
    exclude_environments: z.array(z.enum(ENVIRONMENTS)),
    exclude_scopes: z.array(z.string()),
    updated_at: Timestamp.nullable().meta({ description: 'null: never set (the defaults).' }),
    last_run: z
      .object({
        at: Timestamp,
        action: z.enum(DORMANT_ACTIONS),
        acted: z.number().int().meta({ description: 'Keys revoked (or notified about).' }),
        spared: z.number().int().meta({
          description: 'Dormant keys a revoking run left alone (see the preview’s spared).',
        }),
        downgraded: z.string().nullable(),
        skipped: z.string().nullable().meta({
          description:
            'Why the run did not apply the policy (usage not yet complete, a failure); null: it did.',
        }),
      })
      .nullable()
      .meta({ description: 'What the daily run last did with the policy; null: never run.' }),
  })
  .meta({ id: 'DormantKeyPolicy' });

const PreviewKey = {
  key_id: Uuid,
  name: z.string(),
  prefix: z.string(),
  environment: z.enum(ENVIRONMENTS),
  scopes: z.array(z.string()),
  created_at: Timestamp,
  last_used_at: Timestamp.nullable(),
};

export const DormantPreviewJson = z
  .object({
    policy: DormantPolicyJson,
    next_run_at: Timestamp.nullable().meta({
      description: 'When the worker applies the policy next (daily); null while it is off.',
    }),
    action: z.enum(DORMANT_ACTIONS).meta({
      description:
        'What the run does: the policy’s action, or notify when a revoking policy’s author key no longer has the authority (see downgraded).',
    }),
    downgraded: z.string().nullable().meta({
      description:
        'Why a revoking policy only notifies now (its author key was revoked, expired, or lost keys:write); null otherwise. Saving the policy again with a key that has the authority restores it.',
    }),
    keys: z.array(z.object(PreviewKey)).meta({
      description:
        'Exactly the keys a run would act on now, least recently used first (empty while the policy is off). A key used before the run is spared.',
    }),
    spared: z
      .array(
        z.object({
          ...PreviewKey,
          reason: z.enum(Object.keys(SPARE_REASONS) as [keyof typeof SPARE_REASONS]),
          detail: z.string(),
        }),
      )
      .meta({
        description:
          'Dormant keys a revoking run leaves alone, and why: the org’s last active org:admin key, or the key the policy acts for. Each gets a key.dormant notice instead.',
      }),
  })
  .meta({ id: 'DormantKeyPolicyPreview' });
