// What a daemon's client does on its own side with the outputs that come back: unpack a directory
// export (with the extractor ADD uses: nothing lands outside dest, owners kept) and --load into its
// Docker. A module of its own so the client loads it only when a build has such an output.
export { extractArchive, loadIntoDocker } from '../solver/index.js';
