import { describe, expect, it } from 'vitest';
import { formatTable, humanDuration, humanSize, parseImagesArgs, renderImages, shortId } from '../../src/cli/images.js';
import { UsageError } from '../../src/cli/usage.js';
import type { ImageRecord } from '../../src/image/store.js';

const hex = (c: string) => c.repeat(64);
const NOW = new Date('2024-06-01T12:00:00Z');

function record(name: string, config: string, createdAgoMs: number, size: number): ImageRecord {
  return {
    name,
    manifest: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${hex('e')}` as ImageRecord['config'], size: 400 },
    config: `sha256:${config}` as ImageRecord['config'],
    size,
    created: new Date(NOW.getTime() - createdAgoMs).toISOString(),
  };
}

const RECORDS: ImageRecord[] = [
  record('docker.io/library/busybox:latest', 'ab12cd34ef56' + '0'.repeat(52), 3 * 3_600_000, 4_261_376),
  record('localhost:5000/team/app:1.2', 'ff00ff00ff00' + '1'.repeat(52), 90_000, 1_234),
  record('docker.io/user/tool:v1', hex('9'), 40 * 86_400_000, 123_456_789),
];

describe('kiln images', () => {
  it('prints docker images table, newest first, familiar names', () => {
    expect(renderImages(RECORDS, { quiet: false, noTrunc: false, format: 'table', now: NOW })).toBe(
      [
        'REPOSITORY                TAG       IMAGE ID       CREATED              SIZE',
        'localhost:5000/team/app   1.2       ff00ff00ff00   About a minute ago   1.23kB',
        'busybox                   latest    ab12cd34ef56   3 hours ago          4.26MB',
        'user/tool                 v1        999999999999   5 weeks ago          123MB',
        '',
      ].join('\n'),
    );
  });

  it('-q prints the short IDs, --no-trunc the full ones', () => {
    expect(renderImages(RECORDS, { quiet: true, noTrunc: false, format: 'table', now: NOW })).toBe('ff00ff00ff00\nab12cd34ef56\n999999999999\n');
    expect(renderImages(RECORDS.slice(2), { quiet: true, noTrunc: true, format: 'table', now: NOW })).toBe(`sha256:${hex('9')}\n`);
  });

  it('--format json writes one docker-style object per line', () => {
    const lines = renderImages(RECORDS.slice(0, 1), { quiet: false, noTrunc: false, format: 'json', now: NOW }).trimEnd().split('\n');
    expect(lines.map((l) => JSON.parse(l))).toEqual([
      {
        Containers: 'N/A',
        CreatedAt: '2024-06-01 09:00:00 +0000 UTC',
        CreatedSince: '3 hours ago',
        Digest: `sha256:${hex('e')}`,
        ID: 'ab12cd34ef56',
        Repository: 'busybox',
        SharedSize: 'N/A',
        Size: '4.26MB',
        Tag: 'latest',
        UniqueSize: 'N/A',
        VirtualSize: '4.26MB',
      },
    ]);
  });

  it('filters by REPOSITORY[:TAG] as typed by users', () => {
    const ids = (filter: string) => renderImages(RECORDS, { quiet: true, noTrunc: false, format: 'table', filter, now: NOW });
    expect(ids('busybox')).toBe('ab12cd34ef56\n');
    expect(ids('docker.io/library/busybox:latest')).toBe('ab12cd34ef56\n');
    expect(ids('busybox:other')).toBe('');
    expect(ids('localhost:5000/team/app')).toBe('ff00ff00ff00\n');
  });

  it('shows an empty store as the header alone', () => {
    expect(renderImages([], { quiet: false, noTrunc: false, format: 'table', now: NOW })).toBe('REPOSITORY   TAG       IMAGE ID   CREATED   SIZE\n');
  });

  it('parses its flags and names bad values', () => {
    expect(parseImagesArgs(['-q', '--root', '/r', 'busybox'])).toEqual({
      quiet: true,
      noTrunc: false,
      format: 'table',
      help: false,
      root: '/r',
      filter: 'busybox',
    });
    expect(parseImagesArgs(['--format', 'json']).format).toBe('json');
    expect(() => parseImagesArgs(['--format', '{{.ID}}'])).toThrow(/invalid argument "\{\{.ID\}\}" for "--format" flag: want table or json/);
    expect(() => parseImagesArgs(['a', 'b'])).toThrow(UsageError);
    expect(() => parseImagesArgs(['--all'])).toThrow(/Unknown option '--all'/);
  });
});

describe('docker units', () => {
  it('humanDuration as go-units', () => {
    const s = 1000;
    const h = 3_600_000;
    expect(
      [0.5 * s, 1 * s, 59 * s, 60 * s, 119 * s, 59 * 60 * s, 1.4 * h, 47 * h, 13 * 24 * h, 59 * 24 * h, 700 * 24 * h, 800 * 24 * h].map(humanDuration),
    ).toEqual([
      'Less than a second',
      '1 second',
      '59 seconds',
      'About a minute',
      'About a minute',
      '59 minutes',
      'About an hour',
      '47 hours',
      '13 days',
      '8 weeks',
      '23 months',
      '2 years',
    ]);
  });

  it('humanSize with 3 significant digits and decimal units', () => {
    expect([0, 999, 1000, 1234, 4_261_376, 12_345_678, 123_456_789, 1_500_000_000, 999_999].map(humanSize)).toEqual([
      '0B',
      '999B',
      '1kB',
      '1.23kB',
      '4.26MB',
      '12.3MB',
      '123MB',
      '1.5GB',
      '1e+03kB',
    ]);
  });

  it('short IDs and table columns', () => {
    expect(shortId(`sha256:${hex('a')}`)).toBe('aaaaaaaaaaaa');
    expect(formatTable(['A', 'LONGER HEADER'], [['x', 'y']])).toBe('A         LONGER HEADER\nx         y\n');
  });
});
